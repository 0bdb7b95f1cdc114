"""Training: :mod:`.config` (every setting and default, torch-free), :mod:`.loop` (the one
training loop), :mod:`.stage1` and :mod:`.stage2` (each stage's data, loss and training),
:mod:`.model` (``cmbdet train``: both stages, then the operating point),
:mod:`.calibrate` (thresholds chosen again on other subjects) and :mod:`.crossval` (the
paper's k-fold protocol). Detection never imports this package."""
