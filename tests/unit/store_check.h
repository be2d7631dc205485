/* What the store tests ask of a store. */
#ifndef SMOLVM_TESTS_STORE_CHECK_H
#define SMOLVM_TESTS_STORE_CHECK_H

#include <jansson.h>

#include "store/store.h"

/* How many layers the store lists. */
static inline unsigned layer_count(struct store *s)
{
    json_t *list = json_array();
    assert_int_equal(store_list_layers(s, list), 0);
    unsigned n = (unsigned)json_array_size(list);
    json_decref(list);
    return n;
}

#endif
