"""The paper's analyses as commands, for float and integer BRF networks.

    python -m brf_hw.analyze response | boundary | params | raster | prune | nir  [options]

Each subcommand writes a PNG and a CSV of the numbers behind it (default ``docs/analysis/``).
One module per analysis; the maths always comes from the project's own pieces (neuron step
functions, the fixed-point step in ``brf_hw.fixed``, the golden model, the training core), so a
plot can never drift from what is trained or built.
"""
