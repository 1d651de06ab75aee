"""The conda_env role's real effect on the stand-in host, after converge and side_effect.yml.

State at this point: `app` was built from files/app.txt (jinja2 3.1.5), rebuilt from
files/app-next.txt (jinja2 3.1.6) while a reader imported from it, and a wrong-hash build
was refused in between; `offline`, built from a pushed wheelhouse without any index, was then
set absent; the micromamba backend only ran in check mode.
"""
import json
import os

import pytest

ROOT = "/opt/gpu_stack/envs"
APP = ROOT + "/app"
FILES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "files")
PYTHON = {"debian12": "3.11.2", "debian13": "3.13.5"}


def stamp(host, prefix):
    return json.loads(host.file(prefix + "/.gpu_stack-env.json").content_string)


def builds(host, name):
    out = host.run("find %s -mindepth 1 -maxdepth 1 -name '.%s-*' -printf '%%f\\n'", ROOT, name)
    assert out.rc == 0, out.stderr
    return sorted(out.stdout.split())


def pinned_python(host):
    return PYTHON[host.check_output("hostname")]


def test_uv_is_the_pinned_binary(host):
    uv = host.file(ROOT + "/.tools/bin/uv")
    assert (uv.user, uv.group, uv.mode) == ("root", "root", 0o755)
    assert host.check_output(ROOT + "/.tools/bin/uv --version").split()[:2] == ["uv", "0.13.9"]


@pytest.mark.parametrize("path,mode", [(ROOT, 0o755), (ROOT + "/.tools/bin", 0o755), (ROOT + "/.cache", 0o700),
                                       (ROOT + "/.wheelhouses", 0o755)])
def test_directories(host, path, mode):
    d = host.file(path)
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("root", "root", mode)


def test_app_points_at_the_rebuilt_prefix_with_the_new_pin(host):
    link = host.file(APP)
    assert link.is_symlink
    target = link.linked_to
    assert os.path.basename(target).startswith(".app-")
    record = stamp(host, target)
    assert "jinja2==3.1.6" in record["pins"]
    assert record["versions"]["jinja2"] == "3.1.6"
    assert record["python_version"] == pinned_python(host)
    assert record["stamp"].startswith(os.path.basename(target)[len(".app-"):])
    out = host.run(APP + "/bin/python -c 'import jinja2, yaml, numpy, markupsafe, platform; "
                   "print(jinja2.__version__, yaml.__version__, numpy.__version__, platform.python_version())'")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == ["3.1.6", "6.0.3", "2.3.5", pinned_python(host)]


def test_the_lock_is_kept_inside_the_build(host):
    kept = host.file(APP + "/.gpu_stack/requirements.txt")
    with open(os.path.join(FILES, "app-next.txt")) as handle:
        assert kept.content_string == handle.read()
    assert kept.mode == 0o644


def test_previous_build_is_kept_whole_and_usable(host):
    current = os.path.basename(host.file(APP).linked_to)
    names = builds(host, "app")
    assert len(names) == 2, names
    previous = ROOT + "/" + [n for n in names if n != current][0]
    assert "jinja2==3.1.5" in stamp(host, previous)["pins"]
    out = host.run(previous + "/bin/python -c 'import jinja2; print(jinja2.__version__)'")
    assert out.rc == 0 and out.stdout.strip() == "3.1.5", out.stderr


def test_no_unfinished_build_or_staging_left(host):
    for name in builds(host, "app") + builds(host, "offline"):
        assert host.file(ROOT + "/" + name + "/.gpu_stack-env.json").exists, name
    assert host.run("ls -a %s | grep -E -- '-spec-|\\.staging-|\\.swap-'", ROOT).rc == 1


def test_reader_never_failed_during_the_rebuild(host):
    log = host.file("/root/conda_env-probe.log").content_string.split()
    assert log.count("FAIL") == 0, host.file("/root/conda_env-probe.err").content_string[-2000:]
    assert log.count("ok") >= 3


def test_refused_inputs_built_nothing(host):
    for name in ("torchy", "wrongpy", "serving"):
        assert not host.file(ROOT + "/" + name).exists
        assert builds(host, name) == []
    # The micromamba run was check mode only.
    assert not host.file(ROOT + "/.tools/bin/micromamba").exists


def test_offline_environment_was_removed_whole(host):
    # side_effect.yml checked it was built from its wheelhouse alone, then set it absent.
    assert not host.file(ROOT + "/offline").exists
    assert builds(host, "offline") == []
    assert not host.file(ROOT + "/.wheelhouses/offline").exists


def test_an_unprivileged_user_can_use_but_not_change_the_environment(host):
    use = host.run("runuser -u nobody -- %s/bin/python -c 'import numpy; print(numpy.__version__)'", APP)
    assert use.rc == 0 and use.stdout.strip() == "2.3.5", use.stderr
    site = host.check_output(APP + "/bin/python -c 'import jinja2, os; print(os.path.dirname(jinja2.__file__))'")
    assert host.run("runuser -u nobody -- touch %s/probe", site).rc != 0


def test_packages_were_compiled_to_bytecode_at_build_time(host):
    site = host.check_output(APP + "/bin/python -c 'import jinja2, os; print(os.path.dirname(jinja2.__file__))'")
    assert host.run("ls %s/__pycache__/ | grep -q '^environment\\..*\\.pyc$'", site).rc == 0
