#include "bundle/sections.h"

#include <errno.h>

#include "util/err.h"

bool bundle_has_state(const struct bundle *b)
{
    return bundle_has(b, SECTION_STATE);
}

int bundle_copy_state(const char *from, const char *to)
{
    static const char *const sections[] = {SECTION_CONFIG, SECTION_STATE, SECTION_MEMORY};
    struct bundle *b;
    struct bundle_writer *w;
    int r = bundle_open(from, &b);

    if (r < 0)
        return r;
    if (!bundle_has_state(b))
        r = err_plain(EINVAL, "'%s' holds no saved state", from);
    if (r == 0)
        r = bundle_writer_open(to, &w);
    for (size_t i = 0; r == 0 && i < sizeof(sections) / sizeof(sections[0]); i++)
        if ((r = bundle_copy_section(w, b, sections[i])) < 0)
            bundle_writer_abort(w);
    if (r == 0)
        r = bundle_writer_commit(w);
    bundle_close(b);
    return r;
}
