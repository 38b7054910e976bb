"""The offline half: simulation, datasets, training, evaluation and reports."""
