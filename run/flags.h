// Command-line flags from tables: each flag's names, its help line and how
// its value is read sit in one row, so that parsing and --help cannot drift
// apart. run/run.c has the flags every trainer takes; each trainer has a table
// of its own (as optim/ has for the optimizers' hyperparameters).
#ifndef RUN_FLAGS_H
#define RUN_FLAGS_H

#include <stddef.h>

typedef struct FlagSpec FlagSpec;

// Reads `value` (the argument after the flag; NULL when the flag is the last
// argument) into dest. Returns how many arguments it used after the flag (0
// or 1), or FLAG_HELP when the flag asks for the help. Fails with one line
// naming the flag when the value is wrong.
typedef int (*FlagParser)(const FlagSpec *f, void *dest, const char *flag, const char *value);

struct FlagSpec {
    const char *short_name, *long_name; // either may be NULL; both NULL: a line of help text only
    const char *arg;                    // the value's name in the help ("N", "F", "DIR"), or NULL
    const char *help;                   // lines separated by '\n'
    FlagParser parse;
    size_t offset;                      // of the destination within the config (see base)
    int base;                           // which of the configs handed to flags_parse_one
    double lo, hi;                      // the range of a number
    int open;                           // FLAG_LO_OPEN | FLAG_HI_OPEN: the range excludes that end
    const char *range;                  // how the error states the range ("in [0, 1]", ">= 0"), or NULL
};
#define FLAG_HELP (-1)
#define FLAG_HELP_MARKDOWN (-2) // --help-markdown: the help as the README's tables
#define FLAG_LO_OPEN 1
#define FLAG_HI_OPEN 2

// A row of help text between the flags (a heading, a note)
#define FLAG_TEXT(text) {NULL, NULL, NULL, text, NULL, 0, 0, 0, 0, 0, NULL}

typedef struct {
    const FlagSpec *specs;
    int count;
} FlagTable;
#define FLAG_TABLE(specs) {(specs), (int)(sizeof(specs) / sizeof((specs)[0]))}

// The row whose short or long name is `flag`, or NULL.
const FlagSpec *flags_find(const FlagTable *t, const char *flag);
// If argv[*i] is in the table, read its value into bases[row.base] + row.offset,
// advance *i past the value and return 1; else return 0. Returns FLAG_HELP
// when the flag asks for the help.
int flags_parse_one(const FlagTable *t, void *const *bases, int argc, char **argv, int *i);
// The table as help lines: "  -b, --batch N          micro-batch size".
void flags_print_help(const FlagTable *t);
// The same as the README's markdown, between the markers "<!-- begin flags
// NAME -->" and "<!-- end flags NAME -->" (dev/readme_flags.py puts it there):
// each text row a paragraph, each run of flags a table of flag and meaning.
void flags_print_markdown(const FlagTable *t, const char *name);
// Markdown text: whitespace runs folded to one space, and | * < > escaped.
void print_markdown_text(const char *text);
// A row of a markdown flag table: | `names` | help | (a | in names escaped)
void flags_print_markdown_row(const char *names, const char *help);

// A README table about flags that is not one of their tables (llm.c's names
// for ours, timm's): a header of cols cells, then rows of cols cells each,
// as markdown, printed between the markers <!-- begin flags NAME --> and
// <!-- end flags NAME --> by --help-markdown. Every flag its first column
// names (the first word of each `code span` that starts with '-') must be one
// the program knows, else flags_print_markdown_table fails naming it: the
// table cannot outlive a renamed flag.
typedef struct {
    const char *name;
    int cols;
    const char *const *cells; // the header's, then each row's
    int num_cells;
} MarkdownTable;
#define MARKDOWN_TABLE(name, cols, cells) {name, cols, cells, (int)(sizeof(cells) / sizeof(cells[0]))}
void flags_print_markdown_table(const MarkdownTable *t, int (*known)(const char *flag));

// The parsers of the common kinds of values. Integers are checked against
// [lo, hi]; numbers with a `range` text fail as "flag F must be <range>, got
// V", others as "flag F must be in [lo, hi], got TEXT".
int flag_int(const FlagSpec *f, void *dest, const char *flag, const char *value);    // int
int flag_long(const FlagSpec *f, void *dest, const char *flag, const char *value);   // long
int flag_u32(const FlagSpec *f, void *dest, const char *flag, const char *value);    // uint32_t
int flag_u64(const FlagSpec *f, void *dest, const char *flag, const char *value);    // uint64_t
int flag_float(const FlagSpec *f, void *dest, const char *flag, const char *value);  // float
int flag_double(const FlagSpec *f, void *dest, const char *flag, const char *value); // double
int flag_01(const FlagSpec *f, void *dest, const char *flag, const char *value);     // int: 0 or 1
int flag_string(const FlagSpec *f, void *dest, const char *flag, const char *value); // const char *: the argument itself
int flag_help(const FlagSpec *f, void *dest, const char *flag, const char *value);   // --help: FLAG_HELP
int flag_help_markdown(const FlagSpec *f, void *dest, const char *flag, const char *value); // FLAG_HELP_MARKDOWN

// The value after a flag, or a failure naming the flag.
const char *flag_value_or_fail(const char *flag, const char *value);

#endif
