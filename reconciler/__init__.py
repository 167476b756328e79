"""reconciler: config-as-code for the ERP bindings of Taobao / Tmall shops."""

__version__ = "0.1.0"

__all__ = ["__version__"]
