"""Builds twotower._twotower with CMake (the project's own build, -DTWOTOWER_BUILD_PYTHON=ON) and
puts it into the package; everything else is in pyproject.toml. The CMake build folder is
build-python/ (TWOTOWER_BUILD_DIR overrides it), so a second install rebuilds only what changed.
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.environ.get("TWOTOWER_BUILD_DIR", os.path.join(ROOT, "build-python"))
        subprocess.check_call(["bash", os.path.join(ROOT, "scripts", "install_deps.sh")])
        subprocess.check_call([
            "cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
            "-DTWOTOWER_BUILD_PYTHON=ON", "-DTWOTOWER_BUILD_TESTS=OFF",
            "-DTWOTOWER_BUILD_EXAMPLES=OFF", "-DTWOTOWER_BUILD_BENCHMARKS=OFF",
            f"-DPython_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", build, "--target", "_twotower"])
        built = glob.glob(os.path.join(build, "python", "twotower", "_twotower*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one _twotower module in {build}, found {built}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)


setup(ext_modules=[CMakeExtension("twotower._twotower")], cmdclass={"build_ext": CMakeBuild})
