"""Paper reproduction and analyses behind ``horq experiment`` and ``horq analyze`` (docs/RESULTS.md).

* :mod:`horq.apps.experiments.accuracy`: the same network, recipe and seeds trained at full precision and at
  orders 0-4; JSON, a markdown table and a PNG of the learning curves.
* :mod:`horq.apps.experiments.residual`: the error guarantee measured on a trained model, ``||r_K|| / ||x||`` of
  every binary layer's real input columns for K = 1..4.
* :mod:`horq.apps.experiments.speedup`: docs/MATH.md's cost model beside measured native-conv vs fp32-conv speedups.
* :mod:`horq.apps.experiments.storage`: bytes of a model, packed vs float32, and of its quantized activations.

This is an application layer like :mod:`horq.apps.cli`: it imports torch lazily, inside the functions that train
or load models, so ``import horq.apps.experiments`` (and the cost model) work without PyTorch.
"""
