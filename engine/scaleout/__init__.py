"""Scale-out: one queue, many workers. The routing policy (pure), the device worker interface, the
runtime a worker runs (in a Ray actor), and moving input and output files between server and worker.
Nothing here imports Ray at module level: `engine.scaleout.ray_backend` does, lazily."""
