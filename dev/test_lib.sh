# The pass/fail bookkeeping the shell tests share; each dev/test_*.sh sources
# it after its `cd` to the repository. ok WHAT and bad WHAT print a result
# line (bad counts it in $fails, which the script's last line turns into its
# exit status); check WHAT CMD... is ok when CMD succeeds, else bad.
fails=0
ok()    { echo "ok   $*"; }
bad()   { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
