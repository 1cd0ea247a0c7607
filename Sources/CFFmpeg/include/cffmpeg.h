// cffmpeg.h — a small C surface over libavformat/libavcodec/libswscale for the Swift Media target.
// FFmpeg's AVERROR macros and the AVFrame.data tuples do not import usefully into Swift, so
// demuxing, decoding, pixel conversion, encoding and muxing are done here behind opaque handles.
// Every function reports failure through its return value plus a message (FFmpeg's own reason).
#ifndef CFFMPEG_H
#define CFFMPEG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// AVERROR(EAGAIN) and AVERROR_EOF, which are function-style macros in FFmpeg.
int cff_error_eagain(void);
int cff_error_eof(void);
/// FFmpeg's text for an error code.
void cff_error_string(int code, char *buf, size_t cap);

// MARK: - Reading

typedef struct cff_reader cff_reader;

typedef struct {
    int width, height;
    /// Frame rate as a fraction: the base rate when the average agrees with it, else the average (0/1 when unknown).
    int fps_num, fps_den;
    /// Frame count from the container (0 when the container does not say; edit lists may hide some).
    int64_t nb_frames;
    /// Video stream duration in seconds (falls back to the file's duration; 0 when unknown).
    double duration;
    int has_audio;
    /// Duration of the best audio stream in seconds (0 when none or unknown).
    double audio_duration;
    char audio_codec[32];
    char codec[32];
    char format[32];
} cff_video_info;

/// Opens a file and its best video stream with a decoder. NULL on failure, with the reason in err.
cff_reader *cff_reader_open(const char *path, char *err, size_t errlen);
/// The same through an explicit input format or device ("v4l2" for /dev/videoN, via libavdevice).
cff_reader *cff_reader_open_format(const char *path, const char *format, char *err, size_t errlen);
void cff_reader_info(const cff_reader *r, cff_video_info *info);
/// Decodes the next frame into the reader. 1: a frame, 0: end of stream, <0: error (see cff_reader_error).
/// *seconds receives the frame's presentation time relative to the stream start, *duration its
/// display duration in seconds (0 when the container does not say).
int cff_reader_decode(cff_reader *r, double *seconds, double *duration);
/// Converts the last decoded frame to packed RGB24 of size dst_w x dst_h (rows of dst_w*3 bytes).
int cff_reader_convert_rgb(cff_reader *r, uint8_t *dst, int dst_w, int dst_h);
/// Seeks to the keyframe at or before `seconds` (relative to the stream start) and flushes the decoder.
int cff_reader_seek(cff_reader *r, double seconds);
/// Counts the shown video packets of the whole file (one per frame for the codecs we meet; packets an
/// edit list discards are not counted), then rewinds.
int64_t cff_reader_count_packets(cff_reader *r);
const char *cff_reader_error(const cff_reader *r);
void cff_reader_close(cff_reader *r);

// MARK: - Writing

typedef struct cff_writer cff_writer;

/// Opens an encoder and muxer for `path` (format from the extension). codec: "libx264", "mpeg4" or
/// NULL/"" for libx264 with a fallback to mpeg4. crf: x264 constant rate factor (mapped to a
/// quantiser for mpeg4). audio_src: NULL, or a file whose first audio stream is copied (bit-exact,
/// no re-encode) into the output, cut to the video's length. NULL on failure, reason in err.
cff_writer *cff_writer_open(const char *path, int width, int height, int fps_num, int fps_den, int crf,
                            const char *preset, const char *codec, const char *audio_src, char *err, size_t errlen);
/// Encodes one packed RGB24 frame (width*height*3 bytes). 0 or a negative error.
int cff_writer_write_rgb(cff_writer *w, const uint8_t *rgb);
/// Flushes the encoder, copies the rest of the audio, writes the trailer and closes the file.
int cff_writer_finish(cff_writer *w);
const char *cff_writer_error(const cff_writer *w);
const char *cff_writer_codec(const cff_writer *w);
int cff_writer_has_audio(const cff_writer *w);
/// Frees everything; closes the file without a trailer when finish was not called.
void cff_writer_free(cff_writer *w);

// MARK: - Still images

/// Encodes packed RGB24 as a complete PNG (kind 0) or JPEG (kind 1, quality 1...31, lower is better)
/// file image in memory. *out must be released with cff_free. 0 or a negative error.
int cff_image_encode(const uint8_t *rgb, int width, int height, int kind, int jpeg_q,
                     uint8_t **out, size_t *out_len, char *err, size_t errlen);
void cff_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
