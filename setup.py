"""Build the Cython kernels in altmount/_core during `pip install`."""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "altmount._core._yenc",
        ["altmount/_core/_yenc.pyx"],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "altmount._core._ranges",
        ["altmount/_core/_ranges.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
