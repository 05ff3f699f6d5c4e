"""Training: the step and the loop shared by fine-tuning and pretraining (:mod:`.step`,
:mod:`.loop`, :mod:`.callbacks`), the optimizer and trainer, evaluation passes, float16,
checkpoints, devices, and scale-out (:mod:`.distributed`, :mod:`.launch`)."""
