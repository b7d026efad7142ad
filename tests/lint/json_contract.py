#!/usr/bin/env python3
"""Checks commands' --output json documents against docs/schema/*.json.

usage: json_contract.py SCHEMA_DIR DIR

DIR holds j-NAME.json files, one command's output each (NAME says which
command: see DOCUMENTS). Every object a document holds is validated against
its object's schema (docs/JSON.md), which refuses fields it does not list:
a new field gets its line in the schema and in docs/JSON.md, a new object
its own schema. Exit 1 naming each mismatch; exit 1 also when a j-*.json
file is not in DOCUMENTS (a command whose objects nobody placed).
"""
import glob
import json
import os
import sys

import jsonschema

# Where each command's objects are: a list of (path, schema) where path is a
# list of keys, "*" for every element of an array. The path [] is the whole
# document. "envelope" lists the keys the document itself may have.
DOCUMENTS = {
    "agent-list": {
        "envelope": ["backups", "windows"],
        "objects": [(["backups", "*"], "backup"), (["windows", "*"], "window")],
    },
    "agent-backup": {"objects": [([], "backup")]},
    "agent-check": {"objects": [(["*"], "check_result")], "array": True},
    "coord-check": "agent-check",
    "agent-verify": {"objects": [([], "verification")]},
    "agent-events": {"objects": [([], "event")], "lines": True},
    "status": {
        "envelope": ["generated_at", "services", "audit_anchor", "holds"],
        "objects": [(["services", "*"], "service"), (["holds", "*"], "hold")],
    },
    "status-one": "status",
    "backups": {
        "envelope": ["service", "backups", "windows"],
        "objects": [(["backups", "*"], "backup"), (["windows", "*"], "window")],
    },
    "backups-shop": "backups",
    "agents": {"envelope": ["agents"], "objects": [(["agents", "*"], "agent")]},
    "coord-agents": {"objects": [(["*"], "agent")], "array": True},
    "audit": {"envelope": ["rows", "truncated"], "objects": [(["rows", "*"], "audit_row")]},
    "audit-verify": {"objects": []},
    "holds": {"envelope": ["holds"], "objects": [(["holds", "*"], "hold")]},
    "hold-add": {"envelope": ["backup_id", "hold"], "objects": []},
    "plan": {
        "envelope": ["plan"],
        "objects": [(["plan", "backups", "*"], "retention_decision")],
    },
    "alerts": {"envelope": ["alerts"], "objects": [(["alerts", "*"], "alert")]},
    "drills": {"envelope": ["drills"], "objects": [(["drills", "*"], "drill")]},
    # Documents of one command each, no shared object: JSON, and their own
    # fields are described with the command (docs/JSON.md).
    "agents-enroll": {"objects": []},
    "agents-revoke": {"objects": []},
    "coord-check-config": {"objects": []},
    "coord-migrate": {"objects": []},
    "coord-audit-verify": {"objects": []},
    "backup-run": {"envelope": ["command_id", "service", "agent", "kind"], "objects": []},
}


def load_schemas(schema_dir):
    schemas = {}
    for path in glob.glob(os.path.join(schema_dir, "*.json")):
        with open(path) as f:
            s = json.load(f)
        jsonschema.Draft202012Validator.check_schema(s)
        schemas[os.path.basename(path)[:-5]] = s
    return schemas


def validator_for(schemas, name):
    s = schemas[name]
    fmt = jsonschema.FormatChecker()
    try:  # jsonschema >= 4.18 resolves $ref through referencing
        from referencing import Registry, Resource

        registry = Registry().with_resources(
            (sc["$id"], Resource.from_contents(sc)) for sc in schemas.values()
        )
        return jsonschema.Draft202012Validator(s, registry=registry, format_checker=fmt)
    except ImportError:  # Debian 12's 4.10
        store = {sc["$id"]: sc for sc in schemas.values()}
        resolver = jsonschema.RefResolver(s["$id"], s, store=store)
        return jsonschema.Draft202012Validator(s, resolver=resolver, format_checker=fmt)


def walk(doc, path):
    if not path:
        yield doc
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(doc, list):
            raise ValueError("expected an array")
        for item in doc:
            yield from walk(item, rest)
    elif isinstance(doc, dict) and head in doc:
        yield from walk(doc[head], rest)


def main(schema_dir, out_dir):
    schemas = load_schemas(schema_dir)
    bad = checked = 0
    for path in sorted(glob.glob(os.path.join(out_dir, "j-*.json"))):
        name = os.path.basename(path)[2:-5]
        spec = DOCUMENTS.get(name)
        while isinstance(spec, str):
            spec = DOCUMENTS[spec]
        if spec is None:
            print("%s: no entry in json_contract.py DOCUMENTS: say which objects it prints" % name)
            bad += 1
            continue
        with open(path) as f:
            text = f.read()
        try:
            docs = [json.loads(l) for l in text.splitlines() if l] if spec.get("lines") else [json.loads(text)]
        except ValueError as e:
            print("%s: not JSON: %s" % (name, e))
            bad += 1
            continue
        for doc in docs:
            if spec.get("array") and not isinstance(doc, list):
                print("%s: the document is not an array" % name)
                bad += 1
            if "envelope" in spec:
                extra = set(doc) - set(spec["envelope"]) if isinstance(doc, dict) else {"(not an object)"}
                if extra:
                    print("%s: top-level fields not in docs/JSON.md: %s" % (name, sorted(extra)))
                    bad += 1
            for opath, schema in spec["objects"]:
                v = validator_for(schemas, schema)
                for obj in walk(doc, opath):
                    checked += 1
                    for err in v.iter_errors(obj):
                        where = "/".join(str(p) for p in err.absolute_path)
                        print("%s: a %s object%s: %s (docs/schema/%s.json)"
                              % (name, schema, " at " + where if where else "", err.message, schema))
                        bad += 1
    print("json contract: %d objects checked, %d mismatches" % (checked, bad))
    return 1 if bad or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
