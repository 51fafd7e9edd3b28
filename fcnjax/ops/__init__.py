"""Pure jnp operators (no Flax): upsampling, transpose convolution, crops."""
from fcnjax.ops import conv_matrix, crop, upsample

__all__ = ["conv_matrix", "crop", "upsample"]
