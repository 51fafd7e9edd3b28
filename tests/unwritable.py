"""A directory made unwritable for the test's thread, also when tests run as root."""
import contextlib
import ctypes
import os


class _CapHeader(ctypes.Structure):
  _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
  _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
              ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def permissions_enforced():
  """File permissions hold for this thread also when it runs as root: drops
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its effective capabilities
  for the block (they stay permitted, so they are raised again after)."""
  if os.geteuid() != 0:
    yield
    return
  libc = ctypes.CDLL(None, use_errno=True)
  header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # capability version 3
  assert libc.capget(ctypes.byref(header), data) == 0, ctypes.get_errno()
  saved = data[0].effective
  data[0].effective = saved & ~0b110
  assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()
  try:
    yield
  finally:
    data[0].effective = saved
    assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()


@contextlib.contextmanager
def read_only(directory):
  os.chmod(directory, 0o555)
  try:
    with permissions_enforced():
      yield
  finally:
    os.chmod(directory, 0o755)
