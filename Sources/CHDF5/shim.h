// shim.h — the HDF5 C API for Swift (CHDF5). HDF5's property-list, type and file-mode "constants"
// are macros that expand to H5open() calls on global ids, which Swift cannot import; they are
// re-exported here as static inline functions, together with a few helpers that need C callbacks.
#ifndef CHDF5_SHIM_H
#define CHDF5_SHIM_H

#include <hdf5.h>
#include <string.h>

static inline unsigned h5s_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned h5s_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned h5s_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned h5s_acc_excl(void) { return H5F_ACC_EXCL; }

static inline hid_t h5s_p_default(void) { return H5P_DEFAULT; }
static inline hid_t h5s_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t h5s_p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t h5s_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t h5s_p_dataset_access(void) { return H5P_DATASET_ACCESS; }
static inline hid_t h5s_p_group_create(void) { return H5P_GROUP_CREATE; }
static inline hid_t h5s_p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t h5s_s_all(void) { return H5S_ALL; }
static inline hsize_t h5s_s_unlimited(void) { return H5S_UNLIMITED; }
static inline size_t h5s_t_variable(void) { return H5T_VARIABLE; }

static inline hid_t h5s_t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t h5s_t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t h5s_t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t h5s_t_native_int16(void) { return H5T_NATIVE_INT16; }
static inline hid_t h5s_t_native_uint32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t h5s_t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t h5s_t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t h5s_t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t h5s_t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t h5s_t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t h5s_t_c_s1(void) { return H5T_C_S1; }

// File types are little-endian standard types so files look the same to h5py on any machine.
static inline hid_t h5s_t_std_u8le(void) { return H5T_STD_U8LE; }
static inline hid_t h5s_t_std_i8le(void) { return H5T_STD_I8LE; }
static inline hid_t h5s_t_std_u16le(void) { return H5T_STD_U16LE; }
static inline hid_t h5s_t_std_i16le(void) { return H5T_STD_I16LE; }
static inline hid_t h5s_t_std_u32le(void) { return H5T_STD_U32LE; }
static inline hid_t h5s_t_std_i32le(void) { return H5T_STD_I32LE; }
static inline hid_t h5s_t_std_u64le(void) { return H5T_STD_U64LE; }
static inline hid_t h5s_t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t h5s_t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t h5s_t_ieee_f64le(void) { return H5T_IEEE_F64LE; }

/// Turns off HDF5's automatic printing of error stacks for the calling thread (the setting is
/// per thread in thread-safe builds); errors are reported through h5s_last_error instead.
static inline void h5s_silence_errors(void) { (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct { char *buf; size_t cap; int count; } h5s_err_acc;

static herr_t h5s_err_walk(unsigned n, const H5E_error2_t *e, void *data) {
    h5s_err_acc *acc = (h5s_err_acc *)data;
    (void)n;
    if (!e || !e->desc || acc->count >= 3) return 0;
    size_t used = strlen(acc->buf);
    if (used + 4 >= acc->cap) return 0;
    if (acc->count > 0) { strncat(acc->buf, "; ", acc->cap - used - 1); used = strlen(acc->buf); }
    char fn[96];
    fn[0] = 0;
    if (e->func_name) { strncpy(fn, e->func_name, sizeof fn - 1); fn[sizeof fn - 1] = 0; }
    size_t room = acc->cap - used - 1;
    strncat(acc->buf, e->desc, room);
    used = strlen(acc->buf);
    if (fn[0] && used + strlen(fn) + 4 < acc->cap) {
        strncat(acc->buf, " (", acc->cap - used - 1);
        strncat(acc->buf, fn, acc->cap - strlen(acc->buf) - 1);
        strncat(acc->buf, ")", acc->cap - strlen(acc->buf) - 1);
    }
    acc->count++;
    return 0;
}

/// Copies the innermost messages of the calling thread's error stack (most specific first) into buf
/// and clears the stack. Returns the number of messages.
static inline int h5s_last_error(char *buf, size_t cap) {
    if (cap == 0) return 0;
    buf[0] = 0;
    h5s_err_acc acc = { buf, cap, 0 };
    (void)H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5s_err_walk, &acc);
    (void)H5Eclear2(H5E_DEFAULT);
    return acc.count;
}

static herr_t h5s_count_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)loc; (void)name; (void)info;
    (*(long *)data)++;
    return 0;
}

/// Number of attributes of an object, or -1 on error.
static inline long h5s_attribute_count(hid_t obj) {
    long n = 0;
    hsize_t idx = 0;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, h5s_count_attr, &n) < 0) return -1;
    return n;
}

/// Number of links in a group, or -1 on error.
static inline long h5s_link_count(hid_t group) {
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0) return -1;
    return (long)info.nlinks;
}

/// Turns off storing modification times in object headers, so the same content gives the same bytes.
static inline herr_t h5s_no_times(hid_t ocpl) { return H5Pset_obj_track_times(ocpl, 0); }

#endif
