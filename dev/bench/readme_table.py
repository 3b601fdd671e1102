"""Put a benchmark's markdown table into README.md between its markers:

    <!-- begin dev/results/bench_train.md -->
    ...replaced...
    <!-- end dev/results/bench_train.md -->

    python3 dev/bench/readme_table.py dev/results/bench_train.md [README.md]

The first line of the matching .txt (the command, date, commit, threads and
load) goes above the table, so the README says where its figures came from.
"""
import os
import sys


def main():
    table = sys.argv[1]
    readme = sys.argv[2] if len(sys.argv) > 2 else "README.md"
    begin, end = f"<!-- begin {table} -->", f"<!-- end {table} -->"
    text = open(readme).read()
    if begin not in text or end not in text:
        sys.exit(f"readme_table.py: {readme} has no markers {begin} ... {end}")
    body = open(table).read().rstrip("\n")
    txt = os.path.splitext(table)[0] + ".txt"
    if os.path.exists(txt):
        lines = open(txt).read().splitlines()
        body = "\n".join(f"`{l}`  " for l in lines[:2]) + "\n\n" + body
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    open(readme, "w").write(f"{head}{begin}\n{body}\n{end}{tail}")
    print(f"readme_table.py: {table} -> {readme}")


if __name__ == "__main__":
    main()
