# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the scenarios' tests ask a gateway (the serving role's or the fleet front's), from inside
the stand-in that runs it, with curl on its loopback."""


def ask(host, url, model, key):
    """One one-token completion: (HTTP status, the X-Gpu-Stack-Instance that answered, or "").
    No Authorization header when key is empty."""
    auth = "-H 'Authorization: Bearer %s' " % key if key else ""
    out = host.run(
        "curl -s -o /dev/null -D - -w '%%{http_code}' %s-H 'Content-Type: application/json' "
        "--data '{\"model\": \"%s\", \"prompt\": \"Hi\", \"max_tokens\": 1}' %s/v1/completions" % (auth, model, url))
    instance = [line.split(":", 1)[1].strip() for line in out.stdout.splitlines()
                if line.lower().startswith("x-gpu-stack-instance:")]
    return out.stdout.strip().splitlines()[-1], (instance or [""])[0]
