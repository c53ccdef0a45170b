#!/usr/bin/env python3
"""Validates TOML profiles against a JSON Schema with a real implementation.

usage: validate_profiles.py SCHEMA.json PROFILE.toml...

Reads each profile with tomllib (Python 3.11) and checks it with jsonschema's
Draft202012Validator (Debian: python3-jsonschema), after checking the schema itself.
Prints "PROFILE: OK" or "PROFILE: INVALID: PATH: MESSAGE" (one line per error).
Exit 0 if every profile is valid, 1 if one is not, 2 if the schema or a file is unusable.
"""
import json
import sys
import tomllib

import jsonschema


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        print(f"{argv[1]}: not a valid draft 2020-12 schema: {e.message}", file=sys.stderr)
        return 2
    if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        print(f"{argv[1]}: $schema is {schema.get('$schema')!r}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    status = 0
    for path in argv[2:]:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            print(f"{path}: cannot read: {e}", file=sys.stderr)
            return 2
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if not errors:
            print(f"{path}: OK")
            continue
        status = 1
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            print(f"{path}: INVALID: {where}: {error.message}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
