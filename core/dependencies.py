"""Optional third-party packages: import on demand, name every missing one with the command that
installs the pinned versions into the Python QGIS runs on, and run that install (pip in a child
process, cancellable)."""
import importlib
import importlib.metadata
import importlib.util
import queue
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import CancelledError, MissingDependencyError

PLUGIN_DIR = Path(__file__).resolve().parents[1]
# shipped in the plugin zip: the runtime pins, and the versions of their dependencies known to work
REQUIREMENTS_FILE = PLUGIN_DIR / 'requirements.txt'
CONSTRAINTS_FILE = PLUGIN_DIR / 'constraints.txt'
# pip name -> import name where they differ
IMPORT_NAMES = {'scikit-learn': 'sklearn'}
INSTALLER = 'Processing Toolbox > RS Geochem Inversion > Setup > Install Python dependencies'


@dataclass(frozen=True)
class Requirement:
    name: str      # pip (distribution) name
    version: str   # pinned version

    @property
    def module(self):
        return IMPORT_NAMES.get(self.name, self.name.replace('-', '_'))

    @property
    def spec(self):
        return f'{self.name}=={self.version}'


def read_pins(path):
    """Requirement per `name==version` line of a requirements/constraints file (comments, blank
    lines and options such as -r are skipped)."""
    pins = []
    for line in Path(path).read_text(encoding='utf-8').splitlines():
        line = line.split('#', 1)[0].strip()
        if '==' in line and not line.startswith('-'):
            name, version = (part.strip() for part in line.split('==', 1))
            pins.append(Requirement(name, version))
    return pins


def runtime_requirements():
    return read_pins(REQUIREMENTS_FILE)


def requirement_of(module_name):
    """The runtime Requirement providing import `module_name` (e.g. 'sklearn.cluster')."""
    top = module_name.split('.')[0]
    for requirement in runtime_requirements():
        if requirement.module == top:
            return requirement
    return Requirement(top, '')


def importable(module_name):
    try:
        importlib.import_module(module_name)
    except ImportError:
        return False
    return True


def findable(module_name):
    """True when the top-level package of `module_name` is installed where Python looks, found
    without importing it: an algorithm checked up front need not load what its run may not use
    (scikit-learn and skl2onnx, ~0.5 s and ~75 MB that a CNN-only training would carry through the
    rest of a workflow); a package that is found but fails to import is named when `require`
    imports it."""
    try:
        return importlib.util.find_spec(module_name.split('.')[0]) is not None
    except (ImportError, ValueError):
        return False


def missing_requirements(module_names):
    """Requirements (once each, in order) among `module_names` that are not installed."""
    missing = []
    for module_name in module_names:
        requirement = requirement_of(module_name)
        if requirement not in missing and not findable(module_name):
            missing.append(requirement)
    return missing


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def qgis_python(executable=None, exec_prefix=None, platform=None):
    """Path of the Python interpreter QGIS runs on, or None. Inside QGIS sys.executable is often
    the QGIS program itself (macOS: QGIS.app/Contents/MacOS/QGIS, Windows: qgis-bin.exe), so the
    interpreter is looked for where each platform's QGIS keeps it."""
    executable = Path(executable or sys.executable)
    exec_prefix = Path(exec_prefix or sys.exec_prefix)
    platform = platform or sys.platform
    version = f'{sys.version_info.major}.{sys.version_info.minor}'
    candidates = [executable] if executable.name.lower().startswith('python') else []
    if platform == 'win32':  # OSGeo4W and the standalone installer: <root>/apps/Python3xx/python.exe
        candidates.append(exec_prefix / 'python.exe')
    else:
        if platform == 'darwin':  # qgis.org's app bundle: QGIS.app/Contents/MacOS/bin/python3
            candidates.append(executable.parent / 'bin' / 'python3')
        candidates += [exec_prefix / 'bin' / f'python{version}', exec_prefix / 'bin' / 'python3']
    return next((path for path in candidates if path.is_file()), None)


def in_virtual_environment():
    return sys.prefix != sys.base_prefix


def externally_managed():
    """PEP 668: the distribution manages this Python (Debian 12+, Ubuntu 23.04+); pip then refuses
    even --user installs unless told --break-system-packages (which affects only the user's own
    site-packages here)."""
    return (Path(sysconfig.get_path('stdlib')) / 'EXTERNALLY-MANAGED').exists()


def pip_target_options(target=None):
    """Where pip installs: `target` (a folder) if given, else the user site-packages of QGIS's
    Python (inside a virtual environment, the environment itself: it has no user site)."""
    if target:
        return ['--target', str(target)]
    if in_virtual_environment():
        return []
    return ['--user', *(['--break-system-packages'] if externally_managed() else [])]


def kept_pins():
    """Requirement pins of the constrained packages QGIS's Python already has, at their installed
    version (e.g. numpy==1.24.2 on Debian 12), so an install command keeps them."""
    pins = [Requirement(pin.name, installed_version(pin.name)) for pin in read_pins(CONSTRAINTS_FILE)]
    return [pin for pin in pins if pin.version]


def install_command(requirements, platform=None):
    """The command a user types to install `requirements` into QGIS's Python (the packages QGIS
    already has, such as numpy, pinned at their versions)."""
    platform = platform or sys.platform
    pip_install = ' '.join(['-m pip install', *pip_target_options(),
                            *(requirement.spec for requirement in [*requirements, *kept_pins()])])
    if platform == 'win32':
        return f'in the OSGeo4W Shell (Start menu, QGIS folder): python {pip_install}'
    python = qgis_python(platform=platform) or 'python3'
    where = 'in Terminal' if platform == 'darwin' else 'in a terminal'
    return f'{where}: "{python}" {pip_install}'


def missing_message(requirements):
    names = ', '.join(requirement.name for requirement in requirements)
    noun = 'package' if len(requirements) == 1 else 'packages'
    return (f'This algorithm needs the Python {noun} {names}, which QGIS\'s Python cannot import. '
            f'Install {"it" if len(requirements) == 1 else "them"} with {INSTALLER}, or '
            f'{install_command(requirements)}; then restart QGIS.')


def require_all(module_names):
    """Raise MissingDependencyError naming every package among `module_names` that is missing."""
    missing = missing_requirements(module_names)
    if missing:
        raise MissingDependencyError(missing_message(missing))


def require(module_name):
    """Import and return `module_name`, or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise MissingDependencyError(missing_message([requirement_of(module_name)])) from error


def install_constraints(path):
    """Write pip constraints to `path`: the shipped constraints, with every package QGIS's Python
    already has pinned to its installed version instead (QGIS, GDAL and Debian's scipy are built
    against the numpy they came with: an install must not replace it)."""
    kept = {pin.name: pin for pin in kept_pins()}
    pins = [kept.get(pin.name, pin) for pin in read_pins(CONSTRAINTS_FILE)]
    Path(path).write_text(''.join(f'{pin.spec}\n' for pin in pins), encoding='utf-8')
    return path


def run_pip(python, arguments, on_line, cancelled, poll_seconds=0.2):
    """Run `python -m pip <arguments>` (an argument list, no shell), pass each output line to
    `on_line`, and return pip's exit status. Once `cancelled()` is true pip is stopped and
    CancelledError raised."""
    process = subprocess.Popen([str(python), '-m', 'pip', *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                               errors='replace')
    lines = queue.Queue()

    def read_output():  # in a thread, so cancel is checked while pip is silent (downloading)
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        while reader.is_alive() or not lines.empty():
            if cancelled():
                raise CancelledError('pip was stopped')
            try:
                on_line(lines.get(timeout=poll_seconds).rstrip())
            except queue.Empty:
                continue
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


def install(requirements, target, on_line, cancelled, python=None):
    """pip-install the pinned `requirements` into QGIS's Python (its user site-packages, see
    pip_target_options) or into folder `target`. Returns (pip's exit status, its output lines)."""
    python = python or qgis_python()
    if python is None:
        raise MissingDependencyError(f'The Python interpreter QGIS runs on was not found next to '
                                     f'{sys.executable}. Install the packages '
                                     f'{install_command(requirements)}.')
    output = []

    def log(line):
        output.append(line)
        on_line(line)

    with tempfile.TemporaryDirectory(prefix='rsgeochem-pip-') as folder:
        constraints = install_constraints(Path(folder) / 'constraints.txt')
        arguments = ['install', '--no-input', '--disable-pip-version-check', '--progress-bar', 'off',
                     *pip_target_options(target), '-c', str(constraints),
                     *(requirement.spec for requirement in requirements)]
        log(f'{python} -m pip {" ".join(arguments)}')
        status = run_pip(python, arguments, log, cancelled)
    return status, output


def pip_failure(status, output):
    """What to tell the user when pip exited with `status`."""
    if any('No module named pip' in line for line in output):
        return ('QGIS\'s Python has no pip. On Debian/Ubuntu install the package python3-pip '
                '(sudo apt install python3-pip), then run this algorithm again.')
    return (f'pip failed (exit status {status}); its messages are in the log above. Packages it '
            'installed before the failure stay installed.')


def usable_now(requirements):
    """After an install into the user site-packages: put that folder on sys.path if Python left it
    out at start-up (it did not exist yet), and say whether every requirement imports now in this
    process, so no restart of QGIS is needed."""
    if site.ENABLE_USER_SITE and not in_virtual_environment():
        user_site = site.getusersitepackages()
        if user_site not in sys.path:
            site.addsitedir(user_site)
    importlib.invalidate_caches()
    return all(importable(requirement.module) for requirement in requirements)
