#!/usr/bin/env python3
"""The checks of `make deploy-check` that no schema knows (scripts/deploy-check.sh runs this).

    deploy-check.py static OUT_DIR          OUT_DIR holds dev.yaml and prod.yaml (rendered overlays)
    deploy-check.py smoke DEV_YAML SHOP_BIN
    deploy-check.py smoke-prod PROD_YAML SHOP_BIN POSTGRES_URL

static: the rendered manifests agree with the configuration they carry (ports, probes, drain delay
and grace period, downstream URLs naming real Services, every trusted key and signing key wired from
a Secret), the dev overlay's Secrets hold every key referenced, the prod overlay generates no Secret
and the README says how to create each one, and its NetworkPolicies allow exactly the calls the
configuration makes. Writes OUT_DIR/dashboard-rules.yml (the dashboard's queries as recording
rules) for `promtool check rules`, which parses them.

smoke: runs the dev overlay's six pods as `shop <service>` processes on loopback, each with exactly
the environment and configuration file its manifest gives it (hosts, ports and the data directory
mapped to loopback and a temporary directory), and places an order through them: the keys, trust,
scopes and URLs of the manifests work together. Bounded: every wait is at most 60 s.

smoke-prod: the same for the prod overlay, on PostgreSQL (POSTGRES_URL: a role that may create
databases; six fresh ones are made and dropped), with Secrets made as the README makes them (random
JWT secret and admin password, `shop keygen` pairs): first the migration Job's container
(`shop migrate`), then the six pods in the production profile.
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

SERVICES = ["users", "catalog", "inventory", "payments", "orders", "notifications"]
ROOT = Path(__file__).resolve().parent.parent
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def load(path):
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def kind(docs, name):
    return [doc for doc in docs if doc["kind"] == name]


def named(docs, kind_name, name):
    found = [d for d in docs if d["kind"] == kind_name and d["metadata"]["name"] == name]
    return found[0] if found else None


def config_of(docs):
    maps = [d for d in kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("shop-config")]
    assert len(maps) == 1, "one shop-config ConfigMap"
    return maps[0], yaml.safe_load(maps[0]["data"]["shop.yaml"])


def container(deployment):
    (shop,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "shop"]
    return shop


def env_refs(cont):
    """name -> ("value", v) or ("secret", secret name, key)."""
    refs = {}
    for env in cont.get("env", []):
        if "value" in env:
            refs[env["name"]] = ("value", env["value"])
        else:
            ref = env["valueFrom"]["secretKeyRef"]
            refs[env["name"]] = ("secret", ref["name"], ref["key"])
    return refs


def urls(section):
    """(peer, url) of every downstream and events subscriber of one service's settings."""
    found = [(p, d["url"]) for p, d in section.get("downstreams", {}).items()]
    found += [(p, s["url"]) for p, s in section.get("events", {}).get("subscribers", {}).items()]
    return found


def check_common(label, docs):
    cmap, config = config_of(docs)
    services = {d["metadata"]["name"]: d for d in kind(docs, "Deployment")}
    check(sorted(services) == sorted(SERVICES), f"{label}: Deployments {sorted(services)}")
    secret_refs = set()
    for name, deployment in services.items():
        where = f"{label} {name}"
        section = config.get(name, {})
        pod = deployment["spec"]["template"]
        spec = pod["spec"]
        shop = container(deployment)
        env = env_refs(shop)
        check(shop.get("args") == [name], f"{where}: args {shop.get('args')}")
        port = {p["name"]: p["containerPort"] for p in shop["ports"]}.get("http")
        check(port == section.get("port"), f"{where}: container port {port} != config port {section.get('port')}")
        check(section.get("host") == "0.0.0.0", f"{where}: config host {section.get('host')}")
        notes = pod["metadata"].get("annotations", {})
        check(notes.get("prometheus.io/scrape") == "true", f"{where}: prometheus.io/scrape")
        check(notes.get("prometheus.io/port") == str(port), f"{where}: prometheus.io/port {notes.get('prometheus.io/port')}")
        check(notes.get("prometheus.io/path") == "/metrics", f"{where}: prometheus.io/path")
        check(shop["livenessProbe"]["httpGet"]["path"] == "/livez", f"{where}: livenessProbe")
        check(shop["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{where}: readinessProbe")
        security = shop["securityContext"]
        check(spec["securityContext"].get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
        check(security.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        check(security.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
        check(security.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities")
        for bound in ("requests", "limits"):
            check(set(shop["resources"].get(bound, {})) >= {"cpu", "memory"}, f"{where}: resources.{bound}")
        sleep = shop["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = section.get("drain_delay_ms", 0) / 1000
        grace = section.get("shutdown_grace_ms", 20000) / 1000
        check(sleep == drain, f"{where}: preStop sleeps {sleep} s, drain_delay_ms is {drain * 1000:.0f}")
        total = spec["terminationGracePeriodSeconds"]
        check(total > sleep + drain + grace, f"{where}: terminationGracePeriodSeconds {total} <= {sleep + drain + grace}")
        mounts = {m["name"]: m["mountPath"] for m in shop["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        config_volume = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == cmap["metadata"]["name"]]
        check(len(config_volume) == 1, f"{where}: mounts the shop-config ConfigMap")
        if config_volume:
            path = mounts[config_volume[0]] + "/shop.yaml"
            check(env.get("CONFIG_PATH") == ("value", path), f"{where}: CONFIG_PATH {env.get('CONFIG_PATH')} != {path}")
        service = named(docs, "Service", name)
        check(service is not None, f"{where}: no Service")
        if service:
            check(service["spec"]["ports"][0]["port"] == port, f"{where}: Service port")
            selector = service["spec"]["selector"]
            check(all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items()), f"{where}: Service selector")
        for peer, url in urls(section):
            match = re.fullmatch(r"http://([a-z-]+):(\d+)", url)
            target = match and named(docs, "Service", match.group(1))
            check(bool(target) and target["spec"]["ports"][0]["port"] == int(match.group(2)),
                  f"{where}: {peer} URL {url} names no Service of the overlay")
        check(env.get("SHOP__JWT_SECRET", ("",))[0] == "secret", f"{where}: SHOP__JWT_SECRET from a Secret")
        check(env.get(f"SHOP__{name.upper()}__DATABASE_URL", ("",))[0] == "secret", f"{where}: database URL from a Secret")
        for kid, trusted in section.get("trusted_keys", {}).items():
            issuer = trusted["issuer"]
            ref = env.get(f"SHOP__{name.upper()}__TRUSTED_KEYS__{kid.upper()}__PUBLIC_KEY")
            check(ref is not None and ref[0] == "secret" and ref[2] == f"{issuer}.public_key",
                  f"{where}: trusted key {kid} has no public_key from {issuer}.public_key")
            signer = env_refs(container(services[issuer])).get(f"SHOP__{issuer.upper()}__SIGNING_KEY")
            check(signer is not None and ref is not None and signer[1] == ref[1] and signer[2] == f"{issuer}.signing_key",
                  f"{where}: {issuer} signs with no signing_key from the Secret of its public key")
        # Each events producer's key is trusted by the subscriber for events:deliver.
        for subscriber in section.get("events", {}).get("subscribers", {}):
            granted = [t for t in config.get(subscriber, {}).get("trusted_keys", {}).values()
                       if t["issuer"] == name and "events:deliver" in t["scopes"]]
            check(bool(granted), f"{where}: {subscriber} does not trust {name} for events:deliver")
        secret_refs |= {(r[1], r[2]) for r in env.values() if r[0] == "secret"}
    return config, services, secret_refs


def check_dev(docs):
    _, services, refs = check_common("dev", docs)
    secrets = {d["metadata"]["name"]: d for d in kind(docs, "Secret")}
    for name, key in sorted(refs):
        check(name in secrets and key in secrets[name].get("data", {}), f"dev: Secret {name} has no key {key}")
    for name, deployment in services.items():
        env = env_refs(container(deployment))
        check(deployment["spec"].get("replicas") == 1, f"dev {name}: replicas")
        check(env.get("SHOP__PROFILE") == ("value", "development"), f"dev {name}: profile")
        url = env.get(f"SHOP__{name.upper()}__DATABASE_URL")
        if url and url[1] in secrets:
            value = base64.b64decode(secrets[url[1]]["data"][url[2]]).decode()
            mounts = [m["mountPath"] for m in container(deployment)["volumeMounts"]]
            check(value.startswith("sqlite://") and any(value.startswith(f"sqlite://{m}/") for m in mounts),
                  f"dev {name}: {value} is not on a mounted volume")


def check_prod(docs):
    config, services, refs = check_common("prod", docs)
    check(config.get("profile") == "production", "prod: profile")
    check(not kind(docs, "Secret"), "prod: a Secret is generated (they are created with kubectl, never committed)")
    readme = (ROOT / "README.md").read_text()
    loops = [set(m.split()) for m in re.findall(r"for s in ([a-z ]+); do", readme)]
    for name, key in sorted(refs):
        service, _, part = key.partition(".")
        documented = f"--from-literal={key}=" in readme or (
            part and f"$s.{part}=" in readme and any(service in loop for loop in loops))
        check(f"create secret generic {name}" in readme and documented,
              f"prod: the README does not show how to create Secret {name} with key {key}")
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in kind(docs, "HorizontalPodAutoscaler")}
    pdbs = {p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") for p in kind(docs, "PodDisruptionBudget")}
    for name, deployment in services.items():
        env = env_refs(container(deployment))
        check("replicas" not in deployment["spec"], f"prod {name}: replicas set (the autoscaler owns them)")
        check("SHOP__PROFILE" not in env, f"prod {name}: SHOP__PROFILE set")
        check(name in hpas, f"prod {name}: no HorizontalPodAutoscaler")
        check(name in pdbs, f"prod {name}: no PodDisruptionBudget")
    job = named(docs, "Job", "shop-migrate")
    check(job is not None, "prod: no shop-migrate Job")
    if job:
        (migrate,) = job["spec"]["template"]["spec"]["containers"]
        check(migrate.get("args") == ["migrate"], "prod: the Job runs `shop migrate`")
        env = env_refs(migrate)
        for name, deployment in services.items():
            key = f"SHOP__{name.upper()}__DATABASE_URL"
            check(env.get(key) == env_refs(container(deployment)).get(key), f"prod: the Job's {key} differs from {name}'s")
    check_network(config, docs)


def selected(selector):
    """The app.kubernetes.io/name values a podSelector selects (None: every pod)."""
    if not selector:
        return None
    names = set()
    if "app.kubernetes.io/name" in selector.get("matchLabels", {}):
        names.add(selector["matchLabels"]["app.kubernetes.io/name"])
    for expression in selector.get("matchExpressions", []):
        if expression["key"] == "app.kubernetes.io/name" and expression["operator"] == "In":
            names |= set(expression["values"])
    return names


def check_network(config, docs):
    calls = set()
    for name in SERVICES:
        for _, url in urls(config[name]):
            host, port = re.fullmatch(r"http://([a-z-]+):(\d+)", url).groups()
            calls.add((name, host, int(port)))
    into, out = set(), set()
    policies = kind(docs, "NetworkPolicy")
    check(any(p["spec"]["podSelector"] == {} and sorted(p["spec"]["policyTypes"]) == ["Egress", "Ingress"]
              for p in policies), "prod: no default-deny NetworkPolicy")
    for policy in policies:
        targets = selected(policy["spec"]["podSelector"]) or set()
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            for peer in rule.get("from", []):
                for source in (selected(peer.get("podSelector")) or set()) if "namespaceSelector" not in peer else set():
                    into |= {(source, t, p) for t in targets for p in ports}
        for rule in policy["spec"].get("egress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            for peer in rule.get("to", []):
                for dest in (selected(peer.get("podSelector")) or set()) if "namespaceSelector" not in peer else set():
                    out |= {(t, dest, p) for t in targets for p in ports}
    check(into == calls, f"prod: NetworkPolicy ingress between services {sorted(into ^ calls)} differs from the calls")
    check(out == calls, f"prod: NetworkPolicy egress between services {sorted(out ^ calls)} differs from the calls")


def dashboard_rules(out_dir):
    dashboard = json.loads((ROOT / "deploy/monitoring/dashboard.json").read_text())
    rules = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$namespace", "shop").replace("$app", ".*")
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    doc = {"groups": [{"name": "dashboard-queries", "rules": rules}]}
    (Path(out_dir) / "dashboard-rules.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    print(f"deploy-check: {len(rules)} dashboard queries written for promtool")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, token=None, body=None, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data, timeout=30) as answer:
            text = answer.read().decode()
            return answer.status, json.loads(text) if text.startswith(("{", "[")) else text
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return None, str(error)


def until(what, probe, within=60):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise SystemExit(f"deploy-check smoke: not within {within} s: {what}")


def rendered_secrets(docs):
    return {d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
            for d in kind(docs, "Secret")}


def resolve(cont, secrets, work, data_dirs):
    """The environment a container gets, with its data directories mapped into `work`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP__") and k != "CONFIG_PATH"}
    for key, ref in env_refs(cont).items():
        value = ref[1] if ref[0] == "value" else secrets[ref[1]][ref[2]]
        for mount in data_dirs:
            value = value.replace(mount, str(work))
        env[key] = value
    return env


def smoke(overlay_yaml, binary, secrets=None, label="dev"):
    docs = load(overlay_yaml)
    _, config = config_of(docs)
    secrets = secrets or rendered_secrets(docs)
    ports = {name: free_port() for name in SERVICES}
    work = Path(tempfile.mkdtemp(prefix="shop-deploy-smoke-"))
    job = named(docs, "Job", "shop-migrate")
    if job:
        (migrate,) = job["spec"]["template"]["spec"]["containers"]
        done = subprocess.run([binary, *migrate["args"]], env=resolve(migrate, secrets, work, []),
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"deploy-check smoke: the migration Job failed:\n{done.stdout}{done.stderr}")
        print(f"deploy-check smoke: the {label} migration Job ran `shop migrate`")
    # The configuration as the pods get it, with the cluster's names and ports mapped to loopback.
    text = yaml.safe_dump(config)
    for name in SERVICES:
        text = text.replace(f"http://{name}:{config[name]['port']}", f"http://127.0.0.1:{ports[name]}")
    mapped = yaml.safe_load(text)
    for name in SERVICES:
        mapped[name]["host"] = "127.0.0.1"
        mapped[name]["port"] = ports[name]
    (work / "shop.yaml").write_text(yaml.safe_dump(mapped))
    children = {}
    try:
        for name in ["users", "catalog", "inventory", "payments", "notifications", "orders"]:
            deployment = named(docs, "Deployment", name)
            shop = container(deployment)
            data_dirs = [m["mountPath"] for m in shop["volumeMounts"] if m["name"] == "data"]
            env = resolve(shop, secrets, work, data_dirs)
            env["CONFIG_PATH"] = str(work / "shop.yaml")
            env["LOG_FORMAT"] = "json"
            log = open(work / f"{name}.log", "w")
            children[name] = subprocess.Popen([binary, *shop["args"]], env=env, stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL)

            def ready(name=name):
                if children[name].poll() is not None:
                    raise SystemExit(f"deploy-check smoke: {name} exited:\n{(work / f'{name}.log').read_text()}")
                return call(ports[name], "GET", "/readyz")[0] == 200

            until(f"{name} ready", ready)
        _, secret, key = env_refs(container(named(docs, "Deployment", "users")))["SHOP__USERS__ADMIN_PASSWORD"]
        admin_password = secrets[secret][key]
        status, body = call(ports["users"], "POST", "/v1/sessions",
                            body={"email": "admin@palisade.local", "password": admin_password})
        assert status == 200, (status, body)
        admin = body["access_token"]
        email, password = "smoke@example.com", "correct horse battery staple"
        status, body = call(ports["users"], "POST", "/v1/users",
                            body={"email": email, "password": password, "display_name": "Smoke"})
        assert status == 201, (status, body)
        customer = call(ports["users"], "POST", "/v1/sessions", body={"email": email, "password": password})[1]["access_token"]
        status, product = call(ports["catalog"], "POST", "/v1/products", admin,
                               {"sku": "SMOKE-1", "name": "Smoke", "category": "smoke", "price": {"amount": 500, "currency": "EUR"}})
        assert status == 201, (status, product)
        status, body = call(ports["inventory"], "PUT", "/v1/stock/SMOKE-1", admin, {"on_hand": 3}, {"If-None-Match": "*"})
        assert status in (200, 201), (status, body)
        status, order = call(ports["orders"], "POST", "/v1/orders", customer,
                             {"lines": [{"product_id": product["id"], "quantity": 1}]}, {"Idempotency-Key": "smoke-1"})
        assert status == 201 and order["status"] == "confirmed", (status, order)

        def notified():
            status, body = call(ports["notifications"], "GET", "/v1/notifications?limit=100", customer)
            kinds = {n["event_type"] for n in body.get("items", [])} if status == 200 else set()
            return {"user.registered", "payment.captured", "order.confirmed"} <= kinds

        until("notifications has the customer's user, payment and order events", notified)
        print(f"deploy-check smoke: the {label} overlay's six pods, run on loopback, placed an order and notified")
    finally:
        # SIGKILL: shutdown is not what this checks, and SIGTERM would wait out drain_delay_ms.
        for child in children.values():
            child.kill()
            child.wait()
        if sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"deploy-check smoke: logs kept in {work}", file=sys.stderr)


def smoke_prod(prod_yaml, binary, postgres_url):
    """Six fresh databases and README-made Secrets, then smoke() on the prod overlay."""
    base = postgres_url.rsplit("/", 1)[0]
    prefix = f"shop_deploy_smoke_{os.getpid()}"

    def sql(template):
        # One psql per database, all at once: each CREATE or DROP DATABASE waits for a checkpoint,
        # which concurrent ones share.
        runs = [subprocess.Popen(["psql", "-q", "-v", "ON_ERROR_STOP=1", postgres_url, "-c",
                                  template.format(f"{prefix}_{service}")], stdout=subprocess.DEVNULL)
                for service in SERVICES]
        if any(run.wait(timeout=60) != 0 for run in runs):
            raise SystemExit(f"deploy-check smoke: {template} failed")

    keys = {}
    for service in ["users", "catalog", "payments", "orders"]:
        lines = subprocess.run([binary, "keygen"], capture_output=True, text=True, check=True).stdout.splitlines()
        pair = dict(line.split(": ", 1) for line in lines)
        keys[f"{service}.signing_key"], keys[f"{service}.public_key"] = pair["signing_key"], pair["public_key"]
    secrets = {
        "shop-jwt": {"secret": base64.b64encode(os.urandom(48)).decode()},
        "shop-users-admin": {"password": base64.b64encode(os.urandom(24)).decode()},
        "shop-databases": {s: f"{base}/{prefix}_{s}" for s in SERVICES},
        "shop-service-keys": keys,
    }
    sql("CREATE DATABASE {}")
    try:
        smoke(prod_yaml, binary, secrets, "prod")
    finally:
        sql("DROP DATABASE IF EXISTS {} WITH (FORCE)")


def main():
    if sys.argv[1:2] == ["static"] and len(sys.argv) == 3:
        out = Path(sys.argv[2])
        check_dev(load(out / "dev.yaml"))
        check_prod(load(out / "prod.yaml"))
        dashboard_rules(out)
        if problems:
            print("\n".join(f"deploy-check: {p}" for p in problems), file=sys.stderr)
            sys.exit(1)
        print("deploy-check: the overlays agree with their configuration; prod allows exactly the calls made")
    elif sys.argv[1:2] == ["smoke"] and len(sys.argv) == 4:
        smoke(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["smoke-prod"] and len(sys.argv) == 5:
        smoke_prod(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
