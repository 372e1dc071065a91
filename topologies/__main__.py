"""Print the controller configuration that matches a topology:  python -m topologies enterprise"""

import argparse
import importlib
import sys

import yaml

NAMES = ("enterprise", "carrier", "mesh")


def spec(name: str):
    return importlib.import_module(f"topologies.{name}").SPEC


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topology", choices=NAMES)
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--token", default=None)
    args = parser.parse_args(argv)
    chosen = spec(args.topology)
    print(f"# {chosen.name}: {chosen.description} (generated from topologies/{chosen.name}.py)")
    yaml.safe_dump(chosen.controller_config(api_port=args.api_port, token=args.token), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
