"""The one compiled module, the feature kernel (app/features/_kernel.c); everything else is in pyproject.toml.

Fused multiply-add is off: the kernel gives numpy's values bit for bit, and a fused a*b+c rounds once where
numpy rounds twice."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("app.features._kernel", ["app/features/_kernel.c"], extra_compile_args=["-ffp-contract=off"])
    ]
)
