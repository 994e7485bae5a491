"""Copies the bundled datasets (top-level datasets/) into the built package, so that
`dataset: digits` works from a plain `pip install .`, not only from a source checkout."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithDatasets(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "mlpbp" / "datasets"
        target.mkdir(parents=True, exist_ok=True)
        for f in Path(__file__).parent.joinpath("datasets").iterdir():
            if f.is_file():
                shutil.copy2(f, target / f.name)


setup(cmdclass={"build_py": BuildWithDatasets})
