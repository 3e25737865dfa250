#!/usr/bin/env python3
"""Turns a CUDA source into C++ the CPU emulation compiles (tests/cuda_emulation/README.md).

Two rewrites, everything else left as written:
  kernel<<<grid, block[, shared[, stream]]>>>(args)
      -> ::lrsmc_emu::launch(::lrsmc_emu::LaunchConfig(grid, block, ...), "kernel", kernel, args)
  extern __shared__ T name[];
      -> T* const name = ::lrsmc_emu::dynamic_shared<T>();
A #line directive keeps compiler messages pointing at the original file and line. In the one
generic launcher (kernels/launcher.hpp: `kernel<<<...>>>` inside launch_kernel(name, kernel, ...)),
the kernel's name is the launcher's `name` argument instead of the literal "kernel".

Usage: rewrite_launches.py SOURCE.cu OUTPUT.cpp
"""
import re
import sys

LAUNCH = re.compile(
    r"(?P<kernel>[A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(?P<config>.*?)>>>\s*\(\s*(?P<close>\))?",
    re.S)
DYNAMIC_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?(?P<type>[\w:]+(?:\s*[\w:]+)*?)\s+"
    r"(?:__align__\(\s*\d+\s*\)\s+)?(?P<name>\w+)\s*\[\s*\]\s*;")


def rewrite(text):
    def launch(match):
        kernel = match.group("kernel")
        name = "name" if kernel == "kernel" else f'"{kernel}"'
        head = (f'::lrsmc_emu::launch(::lrsmc_emu::LaunchConfig({match.group("config")}), '
                f'{name}, {kernel}')
        return head + ")" if match.group("close") else head + ", "

    def shared(match):
        kind = match.group("type")
        return f"{kind}* const {match.group('name')} = ::lrsmc_emu::dynamic_shared<{kind}>();"

    text, launches = LAUNCH.subn(launch, text)
    text, _ = DYNAMIC_SHARED.subn(shared, text)
    if "<<<" in text:
        raise SystemExit("rewrite_launches.py: a <<<...>>> launch was not recognised")
    return text, launches


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    source, output = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    text, _ = rewrite(text)
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(f'#line 1 "{source}"\n' + text)


if __name__ == "__main__":
    main()
