"""Install check of the collection tarball against ansible-core alone plus the declared collections.

Run by scripts/install-check.sh with the Python of a core-matrix environment (ansible-core and
nothing else: no `ansible` package, no collections). Galaxy is not reachable, so the declared
dependencies (galaxy.yml, and their own dependencies) are taken from an `ansible` package wheel,
turned back into collection tarballs with `ansible-galaxy collection build`, and installed with
`--offline`, first the dependencies and then this collection (as an execution environment build
does). Then, with only that collections path and no ansible.cfg:
  - ansible-doc renders every module, filter and role, with nothing on stderr;
  - every module of another collection that the roles and playbooks call exists, and every
    option they pass to it (or to this collection's modules) is one the module documents;
  - every collection named in an FQCN in roles/ and playbooks/ is ansible.builtin, this one or
    a declared dependency;
  - ansible-playbook --syntax-check passes on every playbook, by FQCN, with no warning.
Prints one PASS/FAIL line per check; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import yaml

OWN = "llmops.gpu_stack"
FQCN_KEY = re.compile(r"^([a-z0-9_]+\.[a-z0-9_]+)\.([a-z0-9_]+)$")
FQCN_TEXT = re.compile(r"(?<![\w.])([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.([a-z][a-z0-9_]+)\b")
# Prefixes that look like FQCNs in text but name no collection.
NOT_COLLECTIONS = {"ansible_facts", "item", "hostvars", "os.path", "ansible.module_utils"}

# Warnings that ansible-core itself prints whatever the collection: ansible-core 2.21's
# `ansible-doc -t role` looks at its own internal ansible._protomatter collection and warns that
# it has no version.
UPSTREAM_NOISE = re.compile(r"Collection at '[^']*/ansible/_internal/ansible_collections/ansible/_protomatter' does not have")

failures = []


def stderr_of(result):
    return "\n".join(line for line in result.stderr.splitlines() if line.strip() and not UPSTREAM_NOISE.search(line))


def check(ok, label, detail=""):
    print("%s  %s%s" % ("PASS" if ok else "FAIL", label, (": " + detail) if detail and not ok else ""))
    if not ok:
        failures.append(label)
    return ok


def run(cmd, env=None, cwd=None):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)


def declared_dependencies(source):
    with open(os.path.join(source, "galaxy.yml"), encoding="utf-8") as f:
        galaxy = yaml.safe_load(f)
    deps = dict(galaxy.get("dependencies") or {})
    with open(os.path.join(source, "collections", "requirements.yml"), encoding="utf-8") as f:
        reqs = {c["name"]: c.get("version", "*") for c in yaml.safe_load(f)["collections"]}
    check(deps == reqs, "collections/requirements.yml lists galaxy.yml's dependencies with the same bounds",
          "galaxy.yml %s, collections/requirements.yml %s" % (deps, reqs))
    return deps


def dependency_closure(wheel, names):
    """name -> MANIFEST collection_info, for names and everything they depend on, from the wheel."""
    found = {}
    todo = list(names)
    with zipfile.ZipFile(wheel) as z:
        while todo:
            name = todo.pop()
            if name in found:
                continue
            ns, coll = name.split(".")
            try:
                info = json.loads(z.read("ansible_collections/%s/%s/MANIFEST.json" % (ns, coll)))["collection_info"]
            except KeyError:
                check(False, "%s is in %s" % (name, os.path.basename(wheel)))
                continue
            found[name] = info
            todo.extend(info.get("dependencies") or {})
    return found


def build_dependency(wheel, name, info, out_dir, galaxy_bin):
    """A collection tarball rebuilt from the wheel's installed copy (cached in out_dir)."""
    ns, coll = name.split(".")
    tarball = os.path.join(out_dir, "%s-%s-%s.tar.gz" % (ns, coll, info["version"]))
    if os.path.exists(tarball):
        return tarball
    prefix = "ansible_collections/%s/%s/" % (ns, coll)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if member.startswith(prefix):
                z.extract(member, tmp)
        src = os.path.join(tmp, prefix)
        for meta in ("MANIFEST.json", "FILES.json"):
            os.remove(os.path.join(src, meta))
        keys = ("namespace", "name", "version", "readme", "authors", "description", "license", "license_file",
                "tags", "dependencies", "repository", "documentation", "homepage", "issues")
        galaxy = {k: info[k] for k in keys if info.get(k)}
        galaxy.setdefault("authors", ["unknown"])
        galaxy.setdefault("readme", "README.md")
        if not os.path.exists(os.path.join(src, galaxy["readme"])):
            with open(os.path.join(src, galaxy["readme"]), "w", encoding="utf-8") as f:
                f.write(name + "\n")
        galaxy["build_ignore"] = []
        with open(os.path.join(src, "galaxy.yml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(galaxy, f)
        os.makedirs(out_dir, exist_ok=True)
        result = run([galaxy_bin, "collection", "build", "--output-path", out_dir, src])
        if result.returncode != 0:
            check(False, "build %s %s from the wheel" % (name, info["version"]), result.stderr.strip())
            return None
    return tarball


def yaml_files(root, parts):
    for part in parts:
        base = os.path.join(root, part)
        for dirpath, _dirnames, files in os.walk(base):
            for f in sorted(files):
                if f.endswith((".yml", ".yaml")):
                    yield os.path.join(dirpath, f)


def module_calls(node, calls):
    """(fqcn, option names) of every task in node that calls a non-builtin module by FQCN."""
    if isinstance(node, list):
        for item in node:
            module_calls(item, calls)
    elif isinstance(node, dict):
        for key, value in node.items():
            match = FQCN_KEY.match(str(key))
            if match and match.group(1) not in ("ansible.builtin", "ansible.legacy"):
                calls.append((str(key), sorted(value) if isinstance(value, dict) else []))
            elif isinstance(value, (list, dict)):
                module_calls(value, calls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the checkout (galaxy.yml, collections/requirements.yml)")
    parser.add_argument("--tarball")
    parser.add_argument("--wheel", required=True, help="an ansible package wheel to take the dependencies from")
    parser.add_argument("--work", required=True)
    parser.add_argument("--dep-cache", required=True)
    parser.add_argument("--deps-only", action="store_true",
                        help="only install the declared dependencies into WORK/collections (for the importer check)")
    args = parser.parse_args()

    bindir = os.path.dirname(sys.executable)
    tool = {name: os.path.join(bindir, name) for name in ("ansible-galaxy", "ansible-doc", "ansible-playbook")}
    core = run([tool["ansible-galaxy"], "--version"]).stdout.splitlines()[0]
    print("install-check: %s, Python %d.%d, dependencies from %s" % (
        core, sys.version_info[0], sys.version_info[1], os.path.basename(args.wheel)))
    try:
        import ansible_collections  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
        check(False, "the environment holds ansible-core alone", "an ansible_collections package is installed")
    except ImportError:
        check(True, "the environment holds ansible-core alone")

    declared = declared_dependencies(args.source)
    closure = dependency_closure(args.wheel, declared)
    tarballs = []
    for name in sorted(closure):
        tarball = build_dependency(args.wheel, name, closure[name], args.dep_cache, tool["ansible-galaxy"])
        if tarball:
            tarballs.append(tarball)
    print("install-check: dependencies %s" % ", ".join("%s %s" % (n, closure[n]["version"]) for n in sorted(closure)))

    shutil.rmtree(args.work, ignore_errors=True)
    dest = os.path.join(args.work, "collections")
    os.makedirs(dest)
    config = os.path.join(args.work, "ansible.cfg")
    with open(config, "w", encoding="utf-8") as f:
        f.write("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=config, ANSIBLE_COLLECTIONS_PATH=dest, ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_DEPRECATION_WARNINGS="1")
    env.pop("ANSIBLE_COLLECTIONS_PATHS", None)

    result = run([tool["ansible-galaxy"], "collection", "install", "--offline", "-p", dest] + tarballs, env, args.work)
    check(result.returncode == 0, "install the declared dependencies offline", result.stderr.strip())
    if args.deps_only:
        return 1 if failures else 0
    result = run([tool["ansible-galaxy"], "collection", "install", "--offline", "-p", dest, args.tarball], env, args.work)
    check(result.returncode == 0 and "WARNING" not in result.stderr,
          "install %s offline; its dependencies resolve to the installed ones" % os.path.basename(args.tarball),
          (result.stdout + result.stderr).strip())
    installed = os.path.join(dest, "ansible_collections", "llmops", "gpu_stack")
    if not os.path.isdir(installed):
        return 1

    plugins = [("module", os.path.splitext(m)[0]) for m in sorted(os.listdir(os.path.join(installed, "plugins", "modules")))
               if m.endswith(".py")]
    with open(os.path.join(installed, "FILES.json"), encoding="utf-8") as f:
        shipped = [entry["name"] for entry in json.load(f)["files"]]
    filters = set()
    for path in shipped:
        if path.startswith("plugins/filter/") and path.endswith(".py"):
            listed = run([tool["ansible-doc"], "-t", "filter", "-l", OWN, "--json"], env, args.work)
            filters = set(json.loads(listed.stdout or "{}")) if listed.returncode == 0 else set()
            break
    plugins += [("filter", name.split(".")[-1]) for name in sorted(filters)]
    roles = sorted(r for r in os.listdir(os.path.join(installed, "roles"))
                   if os.path.exists(os.path.join(installed, "roles", r, "meta", "argument_specs.yml")))
    plugins += [("role", r) for r in roles]
    doc_failures = []
    for kind, name in plugins:
        result = run([tool["ansible-doc"], "-t", kind, "%s.%s" % (OWN, name)], env, args.work)
        if result.returncode != 0 or stderr_of(result):
            doc_failures.append("%s %s: %s" % (kind, name, stderr_of(result)[:400]))
    check(not doc_failures, "ansible-doc renders %d modules, %d filters and %d roles cleanly" % (
        sum(kind == "module" for kind, _name in plugins), len(filters), len(roles)), "; ".join(doc_failures))

    # What the roles and playbooks call.
    calls, prefixes = [], {}
    for path in yaml_files(installed, ["roles", "playbooks"]):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for match in FQCN_TEXT.finditer(text):
            if match.group(1) not in NOT_COLLECTIONS:
                prefixes.setdefault(match.group(1), os.path.relpath(path, installed))
        if "/tasks/" in path or "/handlers/" in path or "/playbooks/" in path:
            try:
                module_calls(yaml.safe_load(text), calls)
            except yaml.YAMLError as exc:
                check(False, "parse %s" % os.path.relpath(path, installed), str(exc))
    allowed = {"ansible.builtin", "ansible.legacy", OWN} | set(declared)
    with zipfile.ZipFile(args.wheel) as z:
        every = {".".join(n.split("/")[1:3]) for n in z.namelist() if n.count("/") >= 3 and n.endswith("/MANIFEST.json")}
    undeclared = {p: where for p, where in prefixes.items() if p in every and p not in allowed}
    check(not undeclared, "every collection the roles and playbooks name is declared",
          ", ".join("%s (%s)" % kv for kv in undeclared.items()))
    modules = sorted({call[0] for call in calls})
    result = run([tool["ansible-doc"], "--json", "-t", "module"] + modules, env, args.work)
    docs = json.loads(result.stdout or "{}") if result.returncode == 0 else {}
    missing = [m for m in modules if m not in docs]
    check(not missing, "the %d modules of other collections and of this one that the roles call exist" % len(modules),
          ", ".join(missing) + " " + result.stderr.strip()[:400])
    bad_options = set()
    for fqcn, options in calls:
        spec = ((docs.get(fqcn) or {}).get("doc") or {}).get("options") or {}
        names = set(spec)
        for option in spec.values():
            names.update(option.get("aliases") or [])
        for option in options:
            if option not in names:
                bad_options.add("%s: %s" % (fqcn, option))
    check(not bad_options, "every option the roles pass to those modules is documented by the installed version",
          ", ".join(sorted(bad_options)))

    inventory = os.path.join(installed, "inventories", "example", "hosts.yml")
    playbooks = sorted(os.path.splitext(p)[0] for p in os.listdir(os.path.join(installed, "playbooks")) if p.endswith(".yml"))
    for playbook in playbooks:
        result = run([tool["ansible-playbook"], "-i", inventory, "--syntax-check", "%s.%s" % (OWN, playbook)], env, args.work)
        warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
        check(result.returncode == 0 and not warnings, "ansible-playbook --syntax-check %s.%s" % (OWN, playbook),
              "rc %d %s" % (result.returncode, (result.stderr.strip() or result.stdout.strip())[-600:]))

    print("install-check: %s, %d checks failed" % (core, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
