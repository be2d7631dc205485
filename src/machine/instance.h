/* Instance folders: $XDG_DATA_HOME/smolvm/instances/NAME holds what a VM
 * named NAME writes (its deltas over a bundle's or an appliance's disks,
 * the files unpacked for it) and, for an instance of the store
 * (store/store.h), its instance.json, delta and saved states. The folder
 * of them all is paths_instances_dir() (util/paths.h, which the store
 * opens too); NAME's folder is made here alone (instance_dir()). A store
 * instance is started, suspended and exported from here. */
#ifndef SMOLVM_MACHINE_INSTANCE_H
#define SMOLVM_MACHINE_INSTANCE_H

#include <stdbool.h>

struct vm_config;

/* NAME's folder, created if missing. *out malloc'd. */
int instance_dir(const char *name, char **out) __attribute__((warn_unused_result));
/* A VM without a name of its own (vm-PID) has ended: the files it wrote
 * would pile up unseen (no later command can name them). A store
 * instance of that name keeps its folder. */
void instance_dir_remove_unnamed(const char *name);

/* A jailed receive's folder for NAME (cli/receive.c), made before the
 * jail and named only once the VM has arrived (confine/jail.h: the
 * arrival): .NAME.receiving-PID in the instances folder, PID this
 * process's, held flock'd through an open descriptor for as long as its
 * receiver lives. Such folders of receivers that are gone (no such
 * process, and unlocked) are removed first; a live receiver's never.
 * Neither is made when NAME's folder is there already (*temporary NULL:
 * the VM uses it, as an un-jailed receive would). 0 with *instances and
 * *temporary malloc'd and *lock_fd, or an error (err.h). */
struct instance_receiving {
    char *instances, *temporary;
    int lock_fd;
};
int instance_receiving_make(const char *name, struct instance_receiving *out)
    __attribute__((warn_unused_result));
/* Removes the folder again (a receive that failed before its jail). */
void instance_receiving_remove(struct instance_receiving *r);
/* Removes the folders of gone receivers in instances (see above). */
void instance_receiving_sweep(const char *instances);

/* A fresh, empty qcow2 delta at path on top of base (never written). */
int instance_overlay_at(const char *path, const char *base, const char *base_format)
    __attribute__((warn_unused_result));
/* The same, named file in instance name's folder (an appliance's root).
 * *out malloc'd. */
int machine_instance_overlay(const char *name, const char *file, const char *base,
                             const char *base_format, char **out)
    __attribute__((warn_unused_result));

/* Whether what names a store instance rather than a bundle file (there is
 * no such file and it has no '/'). */
bool instance_named(const char *what);
/* name (kept, not copied) names a store instance from here on, whatever
 * the working folder holds: a spare is told a machine's name, never a
 * file's (api/spare.h), and runs in its daemon's working folder ("/",
 * where an instance named "tmp" or "srv" would be taken for a folder). */
void instance_name_told(const char *name);

/* An instance's boot settings and delta into cfg, and the state bundle it
 * resumes from (NULL: it boots; shared: the pristine state, which stays).
 * Strings live on. */
int machine_instance_config(const char *name, struct vm_config *cfg, const char **resume,
                            bool *resume_shared) __attribute__((warn_unused_result));
/* The folders create --share gave instance name (which its start maps),
 * each passed to add with ctx; the strings live for the call only. Stops
 * at add's first error. */
struct vm_share_config;
int machine_instance_each_share(const char *name,
                                int (*add)(void *ctx, const struct vm_share_config *share),
                                void *ctx) __attribute__((warn_unused_result));
/* The instance's saved state was resumed: later starts boot. */
int machine_instance_resumed(const char *name) __attribute__((warn_unused_result));
/* A stopped instance written to a bundle: its chain (or flattened), its
 * kernel and initrd, and its saved state when its next start would resume. */
int machine_instance_export(const char *name, const char *path, bool flatten,
                            const char *sign_key) __attribute__((warn_unused_result));
/* Where a running instance's suspended state goes, and marking it
 * written (the next start resumes it). */
int machine_instance_suspend_path(const char *name, char **path)
    __attribute__((warn_unused_result));
int machine_instance_suspended(const char *name) __attribute__((warn_unused_result));

#endif
