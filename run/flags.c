// Command-line flags from tables; see run/flags.h.
#include "run/flags.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/utils.h"

const FlagSpec *flags_find(const FlagTable *t, const char *flag) {
    for (int k = 0; k < t->count; k++) {
        const FlagSpec *f = &t->specs[k];
        if ((f->short_name && strcmp(flag, f->short_name) == 0) || (f->long_name && strcmp(flag, f->long_name) == 0))
            return f;
    }
    return NULL;
}

int flags_parse_one(const FlagTable *t, void *const *bases, int argc, char **argv, int *i) {
    const FlagSpec *f = flags_find(t, argv[*i]);
    if (!f || !f->parse) return 0;
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    int used = f->parse(f, (char *)bases[f->base] + f->offset, argv[*i], value);
    if (used == FLAG_HELP || used == FLAG_HELP_MARKDOWN) return used;
    *i += used;
    return 1;
}

void flags_print_help(const FlagTable *t) {
    for (int k = 0; k < t->count; k++) {
        const FlagSpec *f = &t->specs[k];
        if (!f->help) continue; // accepted or refused by name, without a line of its own
        if (!f->short_name && !f->long_name) { printf("%s\n", f->help); continue; }
        char names[128];
        snprintf(names, sizeof(names), "%s%s%s%s%s", f->short_name ? f->short_name : "    ",
                 f->short_name && f->long_name ? ", " : "", f->long_name ? f->long_name : "", f->arg ? " " : "",
                 f->arg ? f->arg : "");
        // the help's later lines start under its first
        printf("  %-22s%s", names, strlen(names) > 22 ? "  " : " ");
        for (const char *h = f->help; *h; h++) {
            putchar(*h);
            if (*h == '\n') printf("%25s", "");
        }
        printf("\n");
    }
}

void print_markdown_text(const char *text) {
    int space = 0, printed = 0;
    for (const char *s = text; *s; s++) {
        if (*s == ' ' || *s == '\n') { space = 1; continue; }
        if (space && printed) putchar(' ');
        space = 0;
        printed = 1;
        if (*s == '<') printf("&lt;");
        else if (*s == '>') printf("&gt;");
        else {
            if (*s == '|' || *s == '*') putchar('\\');
            putchar(*s);
        }
    }
}

void flags_print_markdown_row(const char *names, const char *help) {
    printf("| `");
    for (const char *s = names; *s; s++) {
        if (*s == '|') putchar('\\'); // a | inside a table's code span too
        putchar(*s);
    }
    printf("` | ");
    print_markdown_text(help);
    printf(" |\n");
}

void flags_print_markdown(const FlagTable *t, const char *name) {
    printf("<!-- begin flags %s -->\n", name);
    int in_table = 0;
    for (int k = 0; k < t->count; k++) {
        const FlagSpec *f = &t->specs[k];
        if (!f->help) continue; // as in flags_print_help
        if (!f->short_name && !f->long_name) {
            printf("%s", in_table ? "\n" : "");
            print_markdown_text(f->help);
            printf("\n\n");
            in_table = 0;
            continue;
        }
        if (!in_table) printf("| flag | meaning |\n|---|---|\n");
        in_table = 1;
        char names[128];
        snprintf(names, sizeof(names), "%s%s%s%s%s", f->short_name ? f->short_name : "",
                 f->short_name && f->long_name ? ", " : "", f->long_name ? f->long_name : "", f->arg ? " " : "",
                 f->arg ? f->arg : "");
        flags_print_markdown_row(names, f->help);
    }
    printf("%s<!-- end flags %s -->\n", in_table ? "\n" : "", name);
}

// each `code span` of a cell whose first word starts with '-' names a flag the program must know
static void check_flags_named(const MarkdownTable *t, const char *cell, int (*known)(const char *flag)) {
    for (const char *open = strchr(cell, '`'); open; open = strchr(open, '`')) {
        const char *close = strchr(open + 1, '`');
        if (!close) fail("README table %s: an unclosed ` in %s", t->name, cell);
        size_t n = strcspn(open + 1, " `");
        char flag[64];
        if (open[1] == '-' && n < sizeof(flag)) {
            memcpy(flag, open + 1, n);
            flag[n] = '\0';
            if (!known(flag)) fail("README table %s names flag %s, which this program does not have", t->name, flag);
        }
        open = close + 1;
    }
}

void flags_print_markdown_table(const MarkdownTable *t, int (*known)(const char *flag)) {
    if (t->num_cells % t->cols != 0) fail("README table %s: %d cells are not rows of %d", t->name, t->num_cells, t->cols);
    printf("<!-- begin flags %s -->\n", t->name);
    for (int i = 0; i < t->num_cells; i++) {
        int col = i % t->cols;
        if (i >= t->cols && col == 0) check_flags_named(t, t->cells[i], known);
        printf("| %s%s", t->cells[i], col == t->cols - 1 ? " |\n" : " ");
        if (i == t->cols - 1) { // the header's end
            for (int c = 0; c < t->cols; c++) printf("|---");
            printf("|\n");
        }
    }
    printf("\n<!-- end flags %s -->\n", t->name);
}

const char *flag_value_or_fail(const char *flag, const char *value) {
    if (!value) fail("flag %s needs a value", flag);
    return value;
}

// (a double holds the ranges exactly up to 2^53; INT64_MAX rounds up to 2^63, which is LLONG_MAX's meaning)
static long long int_value(const FlagSpec *f, const char *flag, const char *value) {
    long long hi = f->hi >= (double)LLONG_MAX ? LLONG_MAX : (long long)f->hi;
    return parse_int_flag_or_fail(flag_value_or_fail(flag, value), flag, (long long)f->lo, hi);
}

int flag_int(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    *(int *)dest = (int)int_value(f, flag, value);
    return 1;
}

int flag_long(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    *(long *)dest = (long)int_value(f, flag, value);
    return 1;
}

int flag_u32(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    *(uint32_t *)dest = (uint32_t)int_value(f, flag, value);
    return 1;
}

int flag_u64(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    *(uint64_t *)dest = (uint64_t)int_value(f, flag, value);
    return 1;
}

static double number_value(const FlagSpec *f, const char *flag, const char *value) {
    double x = parse_double_or_fail(flag_value_or_fail(flag, value), flag);
    int above = (f->open & FLAG_LO_OPEN) ? x > f->lo : x >= f->lo;
    int below = (f->open & FLAG_HI_OPEN) ? x < f->hi : x <= f->hi;
    if (above && below) return x;
    if (f->range) fail("flag %s must be %s, got %g", flag, f->range, x);
    fail("flag %s must be in %s%g, %g%s, got %s", flag, (f->open & FLAG_LO_OPEN) ? "(" : "[", f->lo, f->hi,
         (f->open & FLAG_HI_OPEN) ? ")" : "]", value);
    return x;
}

int flag_float(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    *(float *)dest = (float)number_value(f, flag, value);
    return 1;
}

int flag_double(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    *(double *)dest = number_value(f, flag, value);
    return 1;
}

int flag_01(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    (void)f;
    flag_value_or_fail(flag, value);
    if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) fail("flag %s takes 0 or 1, not '%s'", flag, value);
    *(int *)dest = value[0] == '1';
    return 1;
}

int flag_string(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    (void)f;
    *(const char **)dest = flag_value_or_fail(flag, value);
    return 1;
}

int flag_help(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    (void)f;
    (void)dest;
    (void)flag;
    (void)value;
    return FLAG_HELP;
}

int flag_help_markdown(const FlagSpec *f, void *dest, const char *flag, const char *value) {
    (void)f;
    (void)dest;
    (void)flag;
    (void)value;
    return FLAG_HELP_MARKDOWN;
}
