import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(
    r"__version__ = '([^']+)'", (here / 'graphops' / '__init__.py').read_text()
).group(1)

setup(
    name='graphops',
    version=version,
    description='Relational layers, faithful pooling and an out-of-core SIGN pipeline for PyTorch Geometric',
    long_description=(here / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['graphops', 'graphops.*']),
    install_requires=['torch', 'torch_geometric', 'numpy', 'scipy', 'tqdm'],
    extras_require={
        # Build with `pip install --no-build-isolation` against the installed torch: there are no wheels.
        'sparse': ['torch_sparse', 'torch_scatter'],
        'ogb': ['ogb'],
        'ray': ['ray'],
        # JIT row-parallel CPU kernels (SpMM, triangle counts, SpGEMM); pure-torch fallbacks without it.
        'fast': ['numba'],
        'test': ['pytest', 'hypothesis', 'ruff', 'rdflib', 'pandas', 'pyyaml'],
        'bench': ['matplotlib', 'pyyaml'],
    },
)
