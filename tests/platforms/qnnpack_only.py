"""IPython startup file: this kernel's PyTorch behaves as an ARM build's does, with qnnpack as its only quantized engine.

Used by ``tests/test_platforms.py`` (copied into ``$IPYTHONDIR/profile_default/startup``): before
any lesson cell runs, ``torch.backends.quantized.supported_engines`` reports ``["qnnpack", "none"]``
(what torch 2.14 reports on an aarch64 laptop), the engine is set to ``qnnpack`` and asking for
any other engine raises the ``RuntimeError`` an ARM build raises. The numbers of the x86 CPU
underneath are unchanged: this emulates the quantized engine a learner's platform offers, not
its arithmetic.
"""

import torch

_ENGINES = ("qnnpack", "none")
_cls = type(torch.backends.quantized)
_real_engine = _cls.__dict__["engine"]


class _EngineProp:
    def __get__(self, obj, objtype=None):
        return _real_engine.__get__(obj, objtype)

    def __set__(self, obj, value):
        if value not in _ENGINES:
            raise RuntimeError(f"quantized engine {value} is not supported (emulated ARM platform: qnnpack only)")
        _real_engine.__set__(obj, value)


class _SupportedProp:
    def __get__(self, obj, objtype=None):
        return list(_ENGINES)


_cls.engine = _EngineProp()
_cls.supported_engines = _SupportedProp()
torch.backends.quantized.engine = "qnnpack"
