"""Training: compound-grouped cross-validation of any model (``crossval``), the blend's stack fit on its
members' out-of-fold predictions (``stacking``), the job behind ``moa train`` (``train``) and bundles on disk
(``bundle``)."""
