"""End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's Python package):
upload the example file, see the results, find rendered Plotly charts, switch N, download the CSV; attribution
charts, similar reference profiles, the compound page and the OOD banner of a garbage upload.

Also the screenshot maker for the docs:
    python tests/test_web_browser.py --bundle BUNDLE_DIR [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is absent: install Debian's chromium (make install-test does it) "
                              "to run the browser tests"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app):
    """uvicorn serving `app` in a thread on a free port; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def watch(page) -> list[str]:
    """Collect page errors and console errors (CSP violations and failed loads show up here)."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    return problems


def wait_for_chart(page, selector: str = ".js-chart") -> None:
    page.locator(selector).first.scroll_into_view_if_needed()
    page.wait_for_selector(f"{selector}.js-plotly-plot .main-svg", timeout=30_000)


def wait_for_attributions(page, profile) -> None:
    """Scroll `profile` (an article locator) into view and wait until app.js has drawn its attribution charts."""
    profile.scroll_into_view_if_needed()
    profile.locator(".js-attributions.loaded").wait_for(timeout=60_000)
    profile.locator(".attr-plot.js-plotly-plot .main-svg").first.wait_for(timeout=30_000)


def take_screenshots(browser, base: str, example: Path, out: Path) -> list[Path]:
    """home.png, results.png (the example file's results), explain.png (one profile's attribution charts and
    similar reference profiles) and compound.png (the compound page) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1100}, device_scale_factor=1)
    page.goto(base + "/")
    home = out / "home.png"
    page.screenshot(path=str(home), full_page=True)
    page.set_input_files("#file", str(example))
    page.click("#submit")
    page.wait_for_url("**/results/**")
    results_url = page.url
    page.set_viewport_size({"width": 1280, "height": 1900})
    page.wait_for_selector(".js-heatmap.js-plotly-plot .main-svg", timeout=30_000)
    page.wait_for_selector(".js-chart.js-plotly-plot .main-svg", timeout=30_000)
    page.evaluate("window.scrollTo(0, 0)")
    time.sleep(0.5)  # let Plotly finish its transitions
    results = out / "results.png"
    page.screenshot(path=str(results))

    # one treated profile, whole: top MoAs, scatter, attribution charts, similar reference profiles
    page.set_viewport_size({"width": 1280, "height": 1100})
    profile = page.locator("article.profile:not(.is-control)").first
    wait_for_attributions(page, profile)
    profile.locator(".js-chart.js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    time.sleep(0.5)
    explain = out / "explain.png"
    profile.screenshot(path=str(explain))

    page.set_viewport_size({"width": 1280, "height": 1400})
    page.goto(results_url.split("?")[0] + "/compounds")
    compound = out / "compound.png"
    page.screenshot(path=str(compound))
    page.close()
    return [home, results, explain, compound]


# ------------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url(sim_dataset, with_display_info):
    """A tiny MLP (so the results page has attribution charts) with its reference index, served by uvicorn;
    with the simulator marker and a per-MoA skill report (MoA ids 3, 6, ... not predictable)."""
    pytest.importorskip("playwright")
    from moa_predict.models import make_model
    from moa_predict.training.train import train_bundle
    from moa_predict.web import create_app

    model = make_model("mlp", hidden=(48,), epochs=3, g_pca=8, c_pca=4, batch_size=64)
    # 3-fold CV: a few seconds, and the bundle gets its MoA sets (fit on the OOF) for the page to show
    bundle, _ = train_bundle(model, sim_dataset, n_splits=3, progress=False, gene_only=False)
    with_display_info(bundle)  # a known set of not-predictable MoAs (conftest.py)
    with running(create_app(bundle)) as url:
        yield url


def test_upload_results_charts_n_and_download(base_url, tmp_path):
    import pandas as pd

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        problems = watch(page)
        page.goto(base_url + "/")
        assert "Predict mechanisms of action" in page.locator("h1").inner_text()
        assert page.get_by_label("MoAs listed per profile").count() == 1
        assert "Trained on simulated data" in page.locator("#simulated-note").inner_text()
        assert "SIMULATED profiles" in page.locator("#card-training").inner_text()

        # the model card: MoAs not predictable greyed out, a search box and sortable columns
        page.click("#moa-list summary")
        grey = page.locator("#moa-table tr.not-predictable").first
        # greyed with its judgement: not predictable, or too few compounds to judge (evaluation.skill)
        assert any(w in grey.inner_text() for w in ("not predictable from this training data",
                                                    "too few compounds to judge"))
        assert grey.evaluate("e => getComputedStyle(e).color") == "rgb(138, 147, 159)"
        n_rows = page.locator("#moa-table tbody tr").count()
        page.fill("#moa-filter", "kinase")
        shown = page.locator("#moa-table tbody tr:visible")
        assert 0 < shown.count() < n_rows and all("kinase" in t.lower() for t in shown.all_inner_texts())
        page.fill("#moa-filter", "")
        page.click("#moa-table th:has-text('ROC AUC')")
        page.click("#moa-table th:has-text('ROC AUC')")  # descending: predictable MoAs (AUC 0.9) first
        assert "not-predictable" not in (page.locator("#moa-table tbody tr").first.get_attribute("class") or "")

        # the example file, downloaded from the page
        with page.expect_download() as info:
            page.click("#example-link")
        example = tmp_path / info.value.suggested_filename
        info.value.save_as(example)
        assert example.name == "moa_example_profiles.csv"
        rows = pd.read_csv(example, dtype={"sig_id": str})
        n_ctl = int((rows.cp_type == "ctl_vehicle").sum())

        # drag-and-drop puts a dropped file into the form's file field
        dropped = page.evaluate("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["sig_id\\n"], "dropped.csv", {type: "text/csv"}));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
            return document.getElementById("file").files[0].name;
        }""")
        assert dropped == "dropped.csv" and "dropped.csv" in page.locator("#file-name").inner_text()

        # a bad file is rejected with the row and column, and the form is still there
        bad = tmp_path / "bad.csv"
        bad.write_text(example.read_text().replace("trt_cp", "trt_xx", 1))
        page.set_input_files("#file", str(bad))
        page.click("#submit")
        page.wait_for_selector(".error-box")
        assert "cp_type" in page.locator(".error-box").inner_text()
        assert [m for m in problems if "422" in m] and not [m for m in problems if "422" not in m], problems
        problems.clear()  # the 422 was expected

        # upload the example: summary, top-N tables, rendered Plotly charts
        page.set_input_files("#file", str(example))
        page.click("#submit")
        page.wait_for_url("**/results/**")
        assert page.locator("#stat-rows").inner_text() == str(len(rows))
        assert page.locator("#stat-controls").inner_text() == str(n_ctl)
        # the MoA set of each treated profile, and one sentence with the measured held-out recall
        sentence = page.locator("#sets-sentence").inner_text()
        assert "On compounds this model has not seen, sets at the 90 % level contained the true MoA for" in sentence
        first_set = page.locator("article.profile:not(.is-control) .moa-set").first.inner_text()
        assert first_set.startswith("MoA set at 90 %:") and len(first_set) > len("MoA set at 90 %:")
        first_table = page.locator("table.top-moas").first
        assert first_table.locator("tbody tr").count() == 10
        page.wait_for_selector(".js-heatmap.js-plotly-plot .main-svg", timeout=30_000)
        wait_for_chart(page)
        points = page.locator(".js-chart.js-plotly-plot").first.locator(".scatterlayer .point").count()
        assert points >= 206  # every MoA is a point (+ the highlighted top ones)
        assert page.locator(".js-plotly-plot").count() >= 2

        # switch N: the select submits itself
        page.select_option("#n", "5")
        page.wait_for_url("**n=5**")
        assert page.locator("table.top-moas").first.locator("tbody tr").count() == 5
        wait_for_chart(page)

        # download the CSV and check it against the page
        top_p = float(page.locator("table.top-moas").first.locator("td[data-p]").first.get_attribute("data-p"))
        first_id = page.locator("article.profile:not(.is-control)").first.get_attribute("data-sig-id")
        with page.expect_download() as info:
            page.click("#download-csv")
        csv_path = tmp_path / info.value.suggested_filename
        info.value.save_as(csv_path)
        frame = pd.read_csv(csv_path, dtype={"sig_id": str})
        assert frame.shape == (len(rows), 208) and frame.columns[0] == "sig_id"
        assert frame.columns[-1] == "compound" and frame.compound.equals(rows.compound)  # passed through
        assert list(frame.sig_id) == list(rows.sig_id)
        probs = frame.drop(columns=["sig_id", "compound"])
        assert ((probs.to_numpy() >= 0) & (probs.to_numpy() <= 1)).all()
        assert (probs.to_numpy()[(rows.cp_type == "ctl_vehicle").to_numpy()] == 0).all()
        assert abs(probs.set_index(frame.sig_id).loc[first_id].max() - top_p) < 1e-5

        # the top-N download: one row per profile and MoA, with the predictable flag
        with page.expect_download() as info:
            page.click("#download-top")
        top = pd.read_csv(info.value.path(), dtype={"sig_id": str})
        assert list(top.columns) == ["sig_id", "cp_type", "cp_time", "cp_dose", "out_of_distribution", "compound",
                                     "rank", "moa", "probability", "predictable"]
        assert len(top) == 5 * (len(rows) - n_ctl) + n_ctl  # n=5 from the page; controls: one row, no MoA
        assert top.predictable.dropna().isin([True, False]).all() and not top.predictable.dropna().all()

        # a gzip-compressed CSV uploads like the plain one
        import gzip

        packed = tmp_path / "example.csv.gz"
        packed.write_bytes(gzip.compress(example.read_bytes()))
        page.goto(base_url + "/")
        page.set_input_files("#file", str(packed))
        page.click("#submit")
        page.wait_for_url("**/results/**")
        assert page.locator("#stat-rows").inner_text() == str(len(rows))
        assert "example.csv.gz" in page.locator("h1").inner_text()
        assert page.locator("#simulated-note").is_visible()
        assert page.locator("#confidence-note").is_visible()

        shots = take_screenshots(browser, base_url, example, tmp_path / "shots")
        assert all(p.stat().st_size > 10_000 for p in shots)
        assert not problems, problems


def test_explanations_compounds_and_ood(base_url, tmp_path):
    """Attribution bar charts (fetched and drawn by app.js), similar reference profiles, the compound page, and
    the out-of-distribution banner for a garbage upload."""
    import numpy as np
    import pandas as pd

    from moa_predict.web.services.model_service import example_csv

    example = tmp_path / "example.csv"
    example.write_bytes(example_csv())
    rows = pd.read_csv(example, dtype={"sig_id": str})
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        problems = watch(page)
        page.goto(base_url + "/")
        page.set_input_files("#file", str(example))
        page.click("#submit")
        page.wait_for_url("**/results/**")

        # attributions: 3 horizontal bar charts per treated profile, with the completeness check
        profile = page.locator("article.profile:not(.is-control)").first
        wait_for_attributions(page, profile)
        charts = profile.locator(".attr-plot.js-plotly-plot")
        assert charts.count() == 3
        bars = charts.first.locator(".barlayer .point")
        assert bars.count() == 10  # top-10 features
        check = profile.locator(".attr-check").first.inner_text()
        assert "baseline" in check and "Σ attributions" in check and ("✓" in check or "⚠" in check)
        ticks = charts.first.locator(".ytick text").all_text_contents()
        assert len(ticks) == 10 and all(re.search(r"(g-\d+|c-\d+) = ", t) for t in ticks), ticks
        # genes and cell lines are named as people know them: "AARS1 · g-0 = 1.06"
        from moa_predict.data.identities import feature_info

        all_ticks = [t for k in range(3) for t in charts.nth(k).locator(".ytick text").all_text_contents()]
        named = [(t.split(" · ")[0], t.split(" · ")[1].split(" = ")[0]) for t in all_ticks if " · " in t]
        genes = [(sym, col) for sym, col in named if col.startswith("g-")]
        assert genes, all_ticks
        assert all(sym == feature_info(col)["symbol"] for sym, col in genes)
        assert all(sym == feature_info(col)["cell_line"] for sym, col in named if col.startswith("c-"))
        # dose and time are no bars: one line per chart gives p at every real dose and time
        dose_time = profile.locator(".attr-dose-time").first.inner_text()
        assert "24 h" in dose_time and "72 h" in dose_time and "D2" in dose_time and "(this profile)" in dose_time

        # similar reference profiles and enriched MoAs
        table = profile.locator("table.neighbours")
        assert table.locator("tbody tr").count() == 10
        sims = [float(t) for t in table.locator("tbody tr td:nth-child(5)").all_inner_texts()]
        assert sims == sorted(sims, reverse=True)
        assert profile.locator("table.enrichment caption").inner_text() == "MoAs enriched among them"

        # the compound view, linked from the summary
        page.click("#compound-link")
        page.wait_for_url("**/compounds")
        compounds = page.locator("article.compound")
        assert compounds.count() == rows.loc[rows.cp_type == "trt_cp", "compound"].nunique()
        assert compounds.first.locator("tbody tr").count() == 5
        assert "of 6" in compounds.first.locator("td.agreement").first.inner_text()
        page.click("article.compound >> nth=0 >> text=show its profiles")
        page.wait_for_url("**/results/**q=**")
        assert page.locator("article.profile").count() == 6

        # garbage: valid layout, noise values -> a prominent OOD banner on every profile, counted in the summary
        noise = rows.copy()
        cols = [c for c in noise.columns if c.startswith(("g-", "c-"))]
        noise[cols] = np.random.default_rng(1).normal(0, 2, (len(noise), len(cols))).round(3)
        noise = noise.head(5).assign(cp_type="trt_cp")
        bad = tmp_path / "noise.csv"
        noise.to_csv(bad, index=False)
        page.goto(base_url + "/")
        page.set_input_files("#file", str(bad))
        page.click("#submit")
        page.wait_for_url("**/results/**")
        banner = page.locator(".ood-banner").first
        assert banner.is_visible() and "do not trust" in banner.inner_text().lower()
        assert page.locator(".ood-banner").count() == 5
        assert page.locator("#stat-ood").inner_text() == "5"
        assert page.locator("#ood-summary").is_visible()
        assert not problems, problems


# ------------------------------------------------------------------------------------------------
# screenshots for the docs
# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Take docs/screenshots/{home,results,explain,compound}.png with "
                                                 "Playwright (use a neural bundle: the attribution charts need one).")
    parser.add_argument("--bundle", required=True, help="bundle directory to serve")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    import tempfile

    from moa_predict.web import create_app
    from moa_predict.web.services.model_service import EXAMPLE_FILENAME, example_csv

    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / EXAMPLE_FILENAME
        example.write_bytes(example_csv())
        with running(create_app(args.bundle)) as base, chromium() as browser:
            for path in take_screenshots(browser, base, example, Path(args.out)):
                print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
