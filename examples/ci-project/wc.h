#ifndef WC_H
#define WC_H
#include <stddef.h>
/* Words in buf[0..len) that start there; *in_word carries the state across calls
   (start with 0), so a stream can be counted chunk by chunk. */
size_t count_words(const char *buf, size_t len, int *in_word);
#endif
