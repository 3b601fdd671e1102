"""The README's flag tables, from the flag tables in the code.

Each trainer prints its flags as markdown with --help-markdown (run/flags.c,
flags_print_markdown), one block per table between the markers

    <!-- begin flags NAME -->
    ...
    <!-- end flags NAME -->

(train_gpt2: its own table, then the run's and the optimizers', then llm.c's
and nanoGPT's names beside ours; train_vit: its own, then timm's augmentation
names beside ours). This puts each block into README.md between the same markers, so the
README says what --help says:

    python3 dev/readme_flags.py README.md TRAIN_GPT2 TRAIN_VIT          (make readme-flags)
    python3 dev/readme_flags.py --check README.md TRAIN_GPT2 TRAIN_VIT  (make test)

--check writes nothing and fails, naming each table, when the README's
differs from what the binaries print, or when a block has no markers.
"""
import re
import subprocess
import sys

BLOCK = re.compile(r"<!-- begin flags (\S+) -->\n(.*?)<!-- end flags \1 -->", re.S)


def blocks_of(binary):
    out = subprocess.run([binary, "--help-markdown"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"readme_flags.py: {binary} --help-markdown failed: {out.stderr.strip()}")
    found = dict((m.group(1), m.group(2)) for m in BLOCK.finditer(out.stdout))
    if not found:
        sys.exit(f"readme_flags.py: {binary} --help-markdown printed no flag tables")
    return found


def main():
    args = sys.argv[1:]
    check = args[:1] == ["--check"]
    if check:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    readme, binaries = args[0], args[1:]
    text = open(readme).read()
    in_readme = dict((m.group(1), m.group(2)) for m in BLOCK.finditer(text))
    stale = []
    for binary in binaries:
        for name, body in blocks_of(binary).items():
            if name not in in_readme:
                sys.exit(f"readme_flags.py: {readme} has no markers <!-- begin flags {name} --> ... "
                         f"<!-- end flags {name} --> for the table {binary} prints")
            if in_readme[name] != body:
                stale.append(name)
                text = BLOCK.sub(lambda m: m.group(0) if m.group(1) != name else
                                 f"<!-- begin flags {name} -->\n{body}<!-- end flags {name} -->", text)
    if check:
        if stale:
            sys.exit(f"readme_flags.py: {readme}'s flag tables {', '.join(stale)} differ from the code's "
                     "(make readme-flags writes them)")
        print(f"readme_flags.py: {readme}'s flag tables match the code's")
        return
    open(readme, "w").write(text)
    print(f"readme_flags.py: {readme}: " + (f"wrote {', '.join(stale)}" if stale else "already up to date"))


if __name__ == "__main__":
    main()
