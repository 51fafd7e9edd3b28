"""Training system: state, one step body, pmap / jit drivers, loop, checkpoints."""
