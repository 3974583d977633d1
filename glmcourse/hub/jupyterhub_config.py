# The class hub's JupyterHub configuration, read by `jupyterhub -f` when `python -m glmcourse.hub serve`
# (make hub) starts it; that command checks the options and passes them in GLMCOURSE_HUB_* variables.
#
# One machine, one account: every student's server runs as the account that runs the hub
# (SimpleLocalProcessSpawner), each in its own workspace DATA/students/NAME. Through the hub a student
# reaches only their own server, and that server only their own workspace; code a student runs in a kernel
# runs as the shared account, though. Separate system users (LocalProcessSpawner, run as root) are in
# the README's "A class hub" section.
import os
import resource
import sys
from pathlib import Path

import nativeauthenticator
from jupyterhub.spawner import SimpleLocalProcessSpawner
from nativeauthenticator import NativeAuthenticator

from glmcourse import workspace

c = get_config()  # noqa: F821 (defined by JupyterHub when it reads this file)
env = os.environ
DATA = Path(env["GLMCOURSE_HUB_DATA"])
ADMINS = {name for name in env.get("GLMCOURSE_HUB_ADMINS", "").split(",") if name}
USERS = set(env["GLMCOURSE_HUB_USERS"].split(",")) | ADMINS
MEMORY = int(env["GLMCOURSE_HUB_MEMORY"])
EDITION = env.get("GLMCOURSE_HUB_EDITION", "en")
RUNTIME = Path(env["GLMCOURSE_HUB_RUNTIME"])
ADDRESS_ROOM = 8 * 1024**3  # address space beyond MEMORY: libraries map much more than they touch


class ClassListAuthenticator(NativeAuthenticator):
    """NativeAuthenticator (first visit: the student signs up and sets a password) for the class list only."""

    def validate_username(self, username):
        return username in USERS and super().validate_username(username)


class CourseSpawner(SimpleLocalProcessSpawner):
    """A student's server in their own workspace, under the memory limit, its kernels on IPC sockets."""

    def make_preexec_fn(self, name):
        parent = super().make_preexec_fn(name)

        def preexec():
            parent()  # chdir into the student's folder
            # The grader's limit: heap (RLIMIT_DATA) capped at MEMORY, inherited by every kernel.
            resource.setrlimit(resource.RLIMIT_DATA, (MEMORY, MEMORY))
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY + ADDRESS_ROOM,) * 2)

        return preexec


def prepare_workspace(spawner):
    """Before each start: create the student's workspace, or bring a course update into it."""
    home = Path(spawner.home_dir)
    for line in workspace.sync(home, EDITION):
        spawner.log.info("workspace %s: %s", spawner.user.name, line)
    # Kernel connection files and their IPC sockets: a short path (Unix sockets allow ~107 bytes), 0700.
    runtime = RUNTIME / spawner.user.name
    runtime.mkdir(parents=True, exist_ok=True)
    os.chmod(RUNTIME, 0o700)
    os.chmod(runtime, 0o700)
    # The student's own runs/ (glmcourse.RUNS_DIR), beside their lessons: on one machine the students would
    # otherwise share the course's runs/ and overwrite each other's adapters and datasets.
    spawner.environment = dict(spawner.environment, JUPYTER_RUNTIME_DIR=str(runtime),
                               GLMCOURSE_RUNS_DIR=str(home / "runs"))


c.JupyterHub.ip = env.get("GLMCOURSE_HUB_IP", "127.0.0.1")
c.JupyterHub.port = int(env["GLMCOURSE_HUB_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env["GLMCOURSE_HUB_API_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['GLMCOURSE_HUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = [env["GLMCOURSE_HUB_PROXY"]]
c.JupyterHub.db_url = f"sqlite:///{DATA / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(DATA / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server
c.JupyterHub.cleanup_proxy = True

c.JupyterHub.authenticator_class = ClassListAuthenticator
c.Authenticator.allowed_users = USERS
c.Authenticator.admin_users = ADMINS  # the admin page; /hub/change-password/NAME resets a student's password
c.NativeAuthenticator.open_signup = True  # no approval step: validate_username already admits the class list only
c.NativeAuthenticator.minimum_password_length = 8
c.NativeAuthenticator.check_common_password = True
c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]  # its sign-up page

c.JupyterHub.spawner_class = CourseSpawner
c.SimpleLocalProcessSpawner.home_dir_template = str(DATA / "students" / "{username}")
c.Spawner.notebook_dir = str(workspace.edition_dir(DATA / "students" / "{username}", EDITION))
c.Spawner.default_url = "/lab"
# The course's environment: the hub's own Python, so its ipykernel (and glmcourse) are the kernel's.
c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
c.Spawner.args = [
    "--KernelManager.transport=ipc",
    "--ServerApp.contents_manager_class=glmcourse.workspace_contents.WorkspaceContentsManager",
    *(["--allow-root"] if os.getuid() == 0 else []),  # containers, CI: Jupyter refuses root unless told
    *env.get("GLMCOURSE_HUB_SERVER_ARGS", "").split(),
]
# Offline, as the course always runs; GLMCOURSE_FAST passes through when set (the tests' fast mode).
c.Spawner.environment = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                         "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "GLMCOURSE_FAST"]
c.Spawner.mem_limit = MEMORY  # shown to the server as MEM_LIMIT; enforced by CourseSpawner's limits
c.Spawner.pre_spawn_hook = prepare_workspace
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
