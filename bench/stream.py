"""Streaming prediction at scale, on SIMULATED profiles: throughput and peak memory of `moa predict`'s local
streaming path at several file sizes, for every input -> output format pair asked for, then the largest file
of the first pair through a local Dask cluster (same predictions? wall time, overhead), with an extrapolation
to the CMap compound file and to N workers.

    python bench/stream.py --bundle BUNDLE                          # LISH-layout Parquet: 10k, 100k, 300k
    python bench/stream.py --bundle BUNDLE --sizes 10000 100000 1000000
    python bench/stream.py --bundle GENE_ONLY_BUNDLE --format gctx  # CMap-style GCTX (978 genes in rows)
    python bench/stream.py --bundle BUNDLE --pairs csv:csv parquet:csv parquet:parquet gctx:csv \
        --sizes 20000 200000 --chunk-rows 5000 --dask-workers 0     # every format, one table

Every size runs in its own child process, which reports its own peak RSS (getrusage ru_maxrss), so one run's
memory never hides another's; the parent also times the whole child (interpreter, imports, bundle load), and
the marginal rate between two sizes of a pair, (n2 - n1) / (t2 - t1) of those whole-process times, is the
rate with every fixed cost taken out. The load average is recorded before and after each run. The input is
written once per format and size (not timed): Parquet in 20,000-row groups (profiles tiled from a simulated
pool with Gaussian noise, unique sig_ids), the same profiles as CSV (4 decimals, as LISH-MoA's files), or a
GCTX written by ``simulate.cmap.simulate_gctx`` (answered by the bundle's gene-only model). Outputs are
Parquet unless a pair says otherwise. Prints a table and writes docs/stream/stream_benchmark.json (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CMAP_SIGNATURES, CMAP_GENES = 720_216, 12_328
GOAL_RSS_RATIO, GOAL_RATE = 1.10, 20_000
FORMATS, OUTPUTS = ("parquet", "csv", "gctx"), ("parquet", "csv")


def make_parquet(path: Path, n: int, seed: int = 0, block: int = 20_000) -> None:
    """`n` simulated LISH-layout profiles in `block`-row groups, written block by block (flat memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from moa_predict.data.profiles import schema
    from moa_predict.simulate import simulate

    pool = simulate(n_train=2000, n_test=1, seed=seed).train_features.reset_index(drop=True)
    feats = list(schema.FEATURE_COLUMNS)
    values = pool[feats].to_numpy(np.float32)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, n, block):
        k = min(block, n - start)
        pick = rng.integers(0, len(pool), k)
        frame = pool.iloc[pick][[schema.CP_TYPE, schema.CP_TIME, schema.CP_DOSE]].reset_index(drop=True)
        frame.insert(0, schema.SIG_ID, [f"sim_{start + i:08d}" for i in range(k)])
        x = values[pick] + 0.3 * rng.standard_normal((k, len(feats)), dtype=np.float32)
        block_frame = frame.join(__import__("pandas").DataFrame(x, columns=feats))
        table = pa.Table.from_pandas(block_frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.replace(path)


def make_csv(path: Path, parquet: Path) -> None:
    """The profiles of `parquet` as CSV with 4 decimals (LISH-MoA's own files), written group by group."""
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".tmp")
    handle = pq.ParquetFile(parquet)
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        for g in range(handle.num_row_groups):
            frame = handle.read_row_group(g).to_pandas()
            frame.to_csv(out, index=False, header=g == 0, float_format="%.4f")
    tmp.replace(path)


def make_input(workdir: Path, fmt: str, n: int) -> Path:
    path = workdir / f"sim_{n}.{fmt}"
    if not path.exists():
        if fmt == "gctx":
            from moa_predict.simulate.cmap import simulate_gctx

            simulate_gctx(path, n, seed=0)
        elif fmt == "csv":
            make_csv(path, make_input(workdir, "parquet", n))
        else:
            make_parquet(path, n)
    return path


def child_local(bundle: str, src: str, out: str, chunk_rows: int) -> dict:
    from moa_predict.inference.stream import predict_file
    from moa_predict.bundle import load_bundle

    t0 = time.perf_counter()
    b = load_bundle(bundle)
    load_s = time.perf_counter() - t0
    # the table in docs/stream measures reading, predicting and writing: the OOD check (on by default in
    # 'moa predict' since issue 27, one matrix product with the reference per chunk) is left out, as 'moa predict
    # --no-ood' does
    s = predict_file(b, src, out, chunk_rows=chunk_rows, progress=False, ood=False)
    return {"rows": s.rows, "seconds": round(s.seconds, 2), "bundle_load_seconds": round(load_s, 2),
            "profiles_per_second": round(s.rows / s.seconds, 1)}


def child_dask(bundle: str, src: str, out: str, chunk_rows: int, workers: int, partition_rows: int) -> dict:
    from moa_predict.inference.distributed import predict_file_distributed
    from moa_predict.runtime.cluster import dask_client, local_threads

    t0 = time.perf_counter()
    with dask_client(n_workers=workers) as client:
        start_s = time.perf_counter() - t0
        s = predict_file_distributed(client, bundle, src, out, chunk_rows=chunk_rows, partition_rows=partition_rows,
                                     progress=False, threads=local_threads(workers), ood=False)
        worker_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {"rows": s.rows, "seconds": round(s.seconds, 2), "cluster_start_seconds": round(start_s, 2),
            "partitions": s.extra["partitions"], "partition_rows": partition_rows,
            "seconds_per_partition": round(s.seconds / s.extra["partitions"], 3),
            "profiles_per_second": round(s.rows / s.seconds, 1),
            "worker_peak_rss_mb": sorted(round(v / 1024, 1) for v in worker_rss.values())}


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    process_s = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["process_seconds"] = round(process_s, 2)
    return row


def max_abs_diff(a: Path, b: Path) -> float:
    """Largest |difference| between two prediction Parquet files, read batch by batch (flat memory)."""
    import numpy as np
    import pyarrow.parquet as pq

    worst = 0.0
    fa, fb = pq.ParquetFile(a), pq.ParquetFile(b)
    for x, y in zip(fa.iter_batches(batch_size=50_000), fb.iter_batches(batch_size=50_000)):
        dx, dy = x.to_pandas(), y.to_pandas()
        if not (dx["sig_id"].to_numpy() == dy["sig_id"].to_numpy()).all():
            raise SystemExit("the two outputs list different sig_ids in order")
        worst = max(worst, float(np.abs(dx.iloc[:, 1:].to_numpy(np.float64) - dy.iloc[:, 1:].to_numpy(np.float64)).max()))
    if fa.metadata.num_rows != fb.metadata.num_rows:
        raise SystemExit("the two outputs have different row counts")
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="bundle directory or built-in name (l1000-reference)")
    p.add_argument("--format", choices=FORMATS, default="parquet", help="input format (outputs Parquet)")
    p.add_argument("--pairs", nargs="+", metavar="IN:OUT",
                   help="input:output format pairs, e.g. csv:csv parquet:csv parquet:parquet gctx:csv "
                        "(default: FORMAT:parquet)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    p.add_argument("--dask-workers", type=int, default=2, help="LocalCluster workers for the largest size (0: skip)")
    p.add_argument("--chunk-rows", type=int, default=20_000)
    p.add_argument("--partition-rows", type=int, default=40_000)
    p.add_argument("--workdir", default="/tmp/moa-stream-bench")
    p.add_argument("--out", default=str(ROOT / "docs" / "stream" / "stream_benchmark.json"))
    args = p.parse_args()
    pairs = [tuple(pair.split(":")) for pair in (args.pairs or [f"{args.format}:parquet"])]
    for pair in pairs:
        if len(pair) != 2 or pair[0] not in FORMATS or pair[1] not in OUTPUTS:
            p.error(f"--pairs: {':'.join(pair)} is not IN:OUT with IN in {FORMATS} and OUT in {OUTPUTS}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    from moa_predict.data.builtin import resolve_bundle

    bundle = str(resolve_bundle(args.bundle).resolve())  # a built-in name ('l1000-reference') or a directory
    local = []
    for fmt, out_fmt in pairs:
        for n in sorted(args.sizes):
            src = make_input(work, fmt, n)
            load_before = [round(x, 2) for x in os.getloadavg()]
            row = run_child(["local", bundle, str(src), str(work / f"local_{fmt}_{n}.{out_fmt}"),
                             str(args.chunk_rows)])
            row.update(input=fmt, output=out_fmt, size=n, input_mb=round(src.stat().st_size / 2**20, 1),
                       load_average_before=load_before, load_average_after=[round(x, 2) for x in os.getloadavg()])
            local.append(row)
            print(f"{fmt:>7} -> {out_fmt:<7} {n:>9,}: {row['profiles_per_second']:>9,.0f} profiles/s, peak RSS "
                  f"{row['peak_rss_mb']:,.0f} MB, CPU {row['cpu_seconds']:.1f} s (load {load_before[0]:.1f} before, "
                  f"{row['load_average_after'][0]:.1f} after)", flush=True)
    largest = max(args.sizes)
    dask = None
    fmt, out_fmt = pairs[0]
    if args.dask_workers and out_fmt == "parquet":
        src = make_input(work, fmt, largest)
        dask = run_child(["dask", bundle, str(src), str(work / f"dask_{largest}.parquet"), str(args.chunk_rows),
                          str(args.dask_workers), str(args.partition_rows)])
        base = next(r for r in local if r["size"] == largest and (r["input"], r["output"]) == pairs[0])
        dask.update(size=largest, workers=args.dask_workers, input=fmt,
                    max_abs_difference=max_abs_diff(work / f"local_{fmt}_{largest}.parquet",
                                                    work / f"dask_{largest}.parquet"),
                    overhead_vs_local=round(dask["seconds"] / base["seconds"] - 1, 3))
    report = summarise(args, pairs, local, dask)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_table(report)
    print(f"wrote {out}")


def _pair_summary(rows: list[dict]) -> dict:
    """Ratios, marginal rates and goals of one input -> output pair (its rows by size)."""
    small, big = rows[0], rows[-1]
    rate = big["profiles_per_second"]
    marginal = None
    if len(rows) > 1 and big["process_seconds"] > small["process_seconds"]:
        marginal = round((big["size"] - small["size"]) / (big["process_seconds"] - small["process_seconds"]), 1)
    ratio = round(big["peak_rss_mb"] / small["peak_rss_mb"], 3)
    cpu_ms = ceiling = None
    if len(rows) > 1:  # CPU time hardly depends on what else runs: the cost per profile on a loaded machine too
        cpu_ms = round(1000 * (big["cpu_seconds"] - small["cpu_seconds"]) / (big["size"] - small["size"]), 4)
        ceiling = round((os.cpu_count() or 1) * 1000 / cpu_ms, 1) if cpu_ms > 0 else None
    return {"input": big["input"], "output": big["output"], "rss_ratio_largest_vs_smallest": ratio,
            "marginal_cpu_ms_per_profile": cpu_ms, "cpu_bound_profiles_per_second": ceiling,
            "rss_ratio_largest_vs": {str(r["size"]): round(big["peak_rss_mb"] / r["peak_rss_mb"], 3) for r in rows},
            "profiles_per_second_largest": rate, "marginal_profiles_per_second": marginal,
            "load_average_during": [min(min(r["load_average_before"][0], r["load_average_after"][0]) for r in rows),
                                    max(max(r["load_average_before"][0], r["load_average_after"][0]) for r in rows)],
            "goals_met": {"rss": ratio <= GOAL_RSS_RATIO, "rate": rate >= GOAL_RATE,
                          "marginal_rate": marginal is not None and marginal >= GOAL_RATE}}


def summarise(args: argparse.Namespace, pairs: list[tuple[str, str]], local: list[dict], dask: dict | None) -> dict:
    per_pair = [_pair_summary([r for r in local if (r["input"], r["output"]) == pair]) for pair in pairs]
    first = per_pair[0]
    rate = first["profiles_per_second_largest"]
    report = {
        "data": "SIMULATED profiles (moa_predict.simulate), not real CMap or LISH-MoA data",
        "format": args.format if not args.pairs else None, "pairs": [":".join(p) for p in pairs],
        "bundle": str(args.bundle), "chunk_rows": args.chunk_rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 1) for x in os.getloadavg()]},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "local": local,
        "per_pair": per_pair,
        "rss_ratio_largest_vs_smallest": first["rss_ratio_largest_vs_smallest"],
        "rss_ratio_largest_vs": first["rss_ratio_largest_vs"],
        "rss_note": ("a file smaller than one chunk (--chunk-rows) is read in one smaller chunk, so its peak is "
                     "lower: compare sizes of at least one chunk for flatness"),
        "goals": {"peak_rss_ratio_max": GOAL_RSS_RATIO, "profiles_per_second_min": GOAL_RATE,
                  "rss_met": first["goals_met"]["rss"], "rate_met": first["goals_met"]["rate"]},
        "dask": dask,
    }
    per_worker = None
    if dask:
        per_worker = dask["rows"] / dask["seconds"] / dask["workers"]
    report["extrapolation"] = {
        "cmap_signatures": CMAP_SIGNATURES, "cmap_genes": CMAP_GENES,
        "local_minutes": round(CMAP_SIGNATURES / rate / 60, 1),
        "note": ("CMap's compound file holds 12,328 genes per signature but only the model's genes are read (a span "
                 "of rows of each stored chunk), so the model cost per profile is the one measured here; reading "
                 "the 33 GB file adds its disk time (sequential, once). N workers: time ~ signatures / (N x the "
                 "per-worker rate) + one partition's time, while the machine reading the results keeps up."),
        "per_worker_profiles_per_second": None if per_worker is None else round(per_worker, 1),
        "cluster_minutes": None if per_worker is None else {
            str(n): round((CMAP_SIGNATURES / (n * per_worker) + dask["seconds_per_partition"]) / 60, 2)
            for n in (2, 4, 8, 16, 32)},
    }
    return report


def print_table(report: dict) -> None:
    print(f"\nStreaming prediction ({report['data']}; {report['machine']['cpus']} CPUs; "
          f"{report['chunk_rows']:,}-row chunks)")
    print(f"{'input -> output':>18} {'profiles':>9} {'input MB':>9} {'seconds':>8} {'profiles/s':>11} "
          f"{'process s':>10} {'peak RSS MB':>12} {'CPU s':>7} {'load':>10}")
    for r in report["local"]:
        load = f"{r['load_average_before'][0]:.1f}-{r['load_average_after'][0]:.1f}"
        print(f"{r['input'] + ' -> ' + r['output']:>18} {r['size']:>9,} {r['input_mb']:>9,.0f} {r['seconds']:>8.1f} "
              f"{r['profiles_per_second']:>11,.0f} {r['process_seconds']:>10.1f} {r['peak_rss_mb']:>12,.0f} "
              f"{r.get('cpu_seconds', float('nan')):>7.1f} {load:>10}")
    print(f"\n{'input -> output':>18} {'profiles/s (largest)':>21} {'marginal /s':>12} {'CPU ms/profile':>15} "
          f"{'CPU-bound /s':>13} {'RSS largest/smallest':>21} {'goals met (rate, RSS)':>22} {'load':>10}")
    for s in report["per_pair"]:
        def num(v: float | None, fmt: str = ",.0f") -> str:
            return "-" if v is None else format(v, fmt)

        print(f"{s['input'] + ' -> ' + s['output']:>18} {s['profiles_per_second_largest']:>21,.0f} "
              f"{num(s['marginal_profiles_per_second']):>12} {num(s['marginal_cpu_ms_per_profile'], '.4f'):>15} "
              f"{num(s['cpu_bound_profiles_per_second']):>13} {s['rss_ratio_largest_vs_smallest']:>21.3f} "
              f"{str((s['goals_met']['rate'], s['goals_met']['rss'])):>22} "
              f"{s['load_average_during'][0]:.1f}-{s['load_average_during'][1]:.1f}")
    print(f"goals: >= {GOAL_RATE:,} profiles/s, peak RSS largest / smallest <= {GOAL_RSS_RATIO}. Marginal: between "
          "the smallest and largest size, whole processes. CPU-bound /s: the machine's cores divided by the marginal "
          "CPU time per profile, the rate if every core were free for this job (derived, not measured)")
    d = report["dask"]
    if d:
        print(f"Dask LocalCluster, {d['workers']} workers, {d['size']:,} profiles: {d['seconds']:.1f} s "
              f"({d['profiles_per_second']:,.0f}/s; cluster start {d['cluster_start_seconds']:.1f} s, not counted), "
              f"{d['partitions']} partitions of {d['partition_rows']:,} ({d['seconds_per_partition']:.2f} s each), "
              f"overhead vs local {100 * d['overhead_vs_local']:+.1f} %, max |difference| {d['max_abs_difference']:.2g}, "
              f"worker peak RSS {d['worker_peak_rss_mb']} MB")
    e = report["extrapolation"]
    print(f"CMap compound file ({e['cmap_signatures']:,} signatures): ~{e['local_minutes']} min locally; "
          f"cluster of N workers (minutes): {e['cluster_minutes']}")


def child_main(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    if kind == "local":
        row = child_local(rest[0], rest[1], rest[2], int(rest[3]))
    else:
        row = child_dask(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]), int(rest[5]))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    row["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    row["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)  # the whole child: bundle load included
    print(json.dumps(row))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
