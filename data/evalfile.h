// llm.c's multiple-choice evaluation file (HellaSwag's hellaswag_val.bin, as
// llm.c's dev/data/hellaswag.py writes it with data_common.write_evalfile),
// and the scoring of an example from its completions' token losses.
//
// File (little-endian):
//   int32 header[256]: [0] = 20240522 (magic), [1] = 1 (version),
//                      [2] = number of examples, [3] = the longest example in
//                      bytes, the rest 0
//   then per example a stream of uint16:
//     65535 (START_EXAMPLE), the example's size in bytes (all its fields, these
//     two included), its index (0, 1, ...), the label (index of the right
//     completion), the number of completions (4 for HellaSwag), the context's
//     length and tokens, then per completion its length and tokens.
// A completion is scored by the model's loss on its tokens after the context
// (the last context token predicts its first token): llm.c counts an example
// right when the completion of the lowest mean loss is the label (acc_norm,
// the figure train_gpt2.cu prints); hellaswag.py also reports the lowest
// total loss (acc). Ties go to the lowest index in both.
#ifndef DATA_EVALFILE_H
#define DATA_EVALFILE_H

#include <stdint.h>

#define EVALFILE_MAGIC 20240522
#define EVALFILE_VERSION 1
#define EVALFILE_HEADER_INTS 256
#define EVALFILE_START_EXAMPLE 65535
#define EVALFILE_MAX_COMPLETIONS 64

typedef struct {
    int num_examples;
    int num_completions;    // over all examples
    int longest_row;        // the most tokens of context + one completion
    int *label;             // [num_examples]
    int *ctx_off, *ctx_len; // [num_examples] the context, in tokens[]
    int *first;             // [num_examples + 1] example i's completions are first[i] .. first[i+1]-1
    int *comp_off, *comp_len; // [num_completions] each completion, in tokens[]
    uint16_t *tokens;       // the file's example stream
} EvalSet;

// Read and check the whole file (every field, every token below vocab_size):
// a bad file fails with one line naming it and the field.
void evalset_load(EvalSet *s, const char *path, int vocab_size);
void evalset_free(EvalSet *s);

// The row of completion c (of example i): context then completion, n tokens.
// Writes row[0..n) and returns n.
int evalset_row(const EvalSet *s, int i, int c, int *row);

// Example i from its completions' losses (sum and mean over each completion's
// tokens, in completion order): the predictions by lowest mean and by lowest
// sum. Returns the prediction by mean; *pred_sum gets the other.
int evalset_predict(const EvalSet *s, int i, const double *mean_loss, const double *sum_loss, int *pred_sum);

#endif
