"""Spatial crops (Caffe `Crop` layer semantics) on NHWC arrays."""


def crop(x, offset, size):
  """x[:, oy:oy+h, ox:ox+w, :] for offset (oy, ox) (or one int) and size (h, w)."""
  oy, ox = (offset, offset) if isinstance(offset, int) else offset
  h, w = size
  if oy < 0 or ox < 0 or oy + h > x.shape[1] or ox + w > x.shape[2]:
    raise ValueError(
        f"crop of {h}x{w} at offset ({oy}, {ox}) does not fit in a "
        f"{x.shape[1]}x{x.shape[2]} map")
  return x[:, oy:oy + h, ox:ox + w, :]
