/* What the API's files share: the operations on machines (machines.c),
 * each giving the reply to send. */
#ifndef SMOLVM_SERVE_INTERNAL_H
#define SMOLVM_SERVE_INTERNAL_H

#include "serve/api.h"

void api_fail(struct api_reply *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* err_msg() as the reply, its status and code from the error number. */
void api_fail_errno(struct api_reply *r, int err);
void api_ok(struct api_reply *r, unsigned status, json_t *json);

void machines_list(struct api_reply *r);
void machines_inspect(const char *name, struct api_reply *r);
void machines_create(json_t *body, struct api_reply *r);
void machines_delete(const char *name, struct api_reply *r);
void machines_action(const char *name, const char *action, json_t *body, struct api_reply *r);
void machines_logs(const char *name, struct api_reply *r);
void machines_metrics(struct api_reply *r);

/* The fields each body may have. */
extern const char *const api_create_fields[];
extern const char *const api_save_fields[];
extern const char *const api_no_fields[];

#endif
