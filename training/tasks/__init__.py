"""Training tasks, one module per kind of model; each is a complete training.tasks.base.TrainTask and the
recipes (training.recipes) name their class: curve (Zero-DCE, Zero-DCE++), dln, iqe (IQE DCGAN), enlightengan;
image holds what the image-to-image tasks share."""
