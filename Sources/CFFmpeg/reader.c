// reader.c — demux + decode + RGB conversion for cff_reader (see cffmpeg.h).
#include "cffmpeg.h"

#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

int cff_error_eagain(void) { return AVERROR(EAGAIN); }
int cff_error_eof(void) { return AVERROR_EOF; }

void cff_error_string(int code, char *buf, size_t cap) {
    if (cap == 0) return;
    if (av_strerror(code, buf, cap) < 0) snprintf(buf, cap, "error %d", code);
}

void cff_free(void *p) { av_free(p); }

struct cff_reader {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVStream *st;
    int vindex;
    AVPacket *pkt;
    AVFrame *frame;
    int have_frame;
    int sent_eof;
    int64_t frame_counter;   // fallback clock when frames carry no timestamps
    struct SwsContext *sws;
    char err[512];
};

static void set_err(char *dst, size_t cap, const char *what, int code) {
    if (!dst || cap == 0) return;
    char reason[256];
    cff_error_string(code, reason, sizeof reason);
    snprintf(dst, cap, "%s: %s", what, reason);
}

cff_reader *cff_reader_open(const char *path, char *err, size_t errlen) {
    return cff_reader_open_format(path, NULL, err, errlen);
}

cff_reader *cff_reader_open_format(const char *path, const char *format, char *err, size_t errlen) {
    const AVInputFormat *input = NULL;
    if (format) {
        avdevice_register_all();
        input = av_find_input_format(format);
        if (!input) {
            if (err && errlen) snprintf(err, errlen, "FFmpeg has no input format '%s' (libavdevice without it?)", format);
            return NULL;
        }
    }
    cff_reader *r = av_mallocz(sizeof *r);
    if (!r) { set_err(err, errlen, "out of memory", AVERROR(ENOMEM)); return NULL; }
    int ret = avformat_open_input(&r->fmt, path, input, NULL);
    if (ret < 0) { set_err(err, errlen, "cannot open", ret); av_free(r); return NULL; }
    ret = avformat_find_stream_info(r->fmt, NULL);
    if (ret < 0) { set_err(err, errlen, "cannot read stream info", ret); cff_reader_close(r); return NULL; }
    const AVCodec *codec = NULL;
    ret = av_find_best_stream(r->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (ret < 0) {
        set_err(err, errlen, ret == AVERROR_STREAM_NOT_FOUND ? "no video stream" : "no decodable video stream", ret);
        cff_reader_close(r);
        return NULL;
    }
    r->vindex = ret;
    r->st = r->fmt->streams[ret];
    r->dec = avcodec_alloc_context3(codec);
    if (!r->dec) { set_err(err, errlen, "out of memory", AVERROR(ENOMEM)); cff_reader_close(r); return NULL; }
    ret = avcodec_parameters_to_context(r->dec, r->st->codecpar);
    if (ret < 0) { set_err(err, errlen, "bad codec parameters", ret); cff_reader_close(r); return NULL; }
    r->dec->thread_count = 0;  // let FFmpeg pick; frame order is unaffected
    ret = avcodec_open2(r->dec, codec, NULL);
    if (ret < 0) { set_err(err, errlen, "cannot open decoder", ret); cff_reader_close(r); return NULL; }
    if (r->dec->width <= 0 || r->dec->height <= 0) {
        if (err && errlen) snprintf(err, errlen, "video stream has no frame size");
        cff_reader_close(r);
        return NULL;
    }
    r->pkt = av_packet_alloc();
    r->frame = av_frame_alloc();
    if (!r->pkt || !r->frame) { set_err(err, errlen, "out of memory", AVERROR(ENOMEM)); cff_reader_close(r); return NULL; }
    return r;
}

void cff_reader_info(const cff_reader *r, cff_video_info *info) {
    memset(info, 0, sizeof *info);
    info->width = r->dec->width;
    info->height = r->dec->height;
    // The base rate (r_frame_rate) when the average agrees with it within 1 %: an edit list or a
    // rounded container duration makes the average slightly off (25 fps reported as 24.97).
    AVRational rate = r->st->avg_frame_rate;
    AVRational base = r->st->r_frame_rate;
    if (base.num > 0 && base.den > 0) {
        double a = (rate.num > 0 && rate.den > 0) ? av_q2d(rate) : 0, b = av_q2d(base);
        if (a <= 0 || (a - b) / b < 0.01 && (b - a) / b < 0.01) rate = base;
    }
    if (rate.num <= 0 || rate.den <= 0) { rate.num = 0; rate.den = 1; }
    info->fps_num = rate.num;
    info->fps_den = rate.den;
    info->nb_frames = r->st->nb_frames > 0 ? r->st->nb_frames : 0;
    if (r->st->duration != AV_NOPTS_VALUE && r->st->duration > 0)
        info->duration = (double)r->st->duration * av_q2d(r->st->time_base);
    else if (r->fmt->duration != AV_NOPTS_VALUE && r->fmt->duration > 0)
        info->duration = (double)r->fmt->duration / AV_TIME_BASE;
    int ai = av_find_best_stream(r->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    info->has_audio = ai >= 0;
    if (ai >= 0) {
        AVStream *as = r->fmt->streams[ai];
        if (as->duration != AV_NOPTS_VALUE && as->duration > 0) info->audio_duration = (double)as->duration * av_q2d(as->time_base);
        snprintf(info->audio_codec, sizeof info->audio_codec, "%s", avcodec_get_name(as->codecpar->codec_id));
    }
    snprintf(info->codec, sizeof info->codec, "%s", avcodec_get_name(r->st->codecpar->codec_id));
    snprintf(info->format, sizeof info->format, "%s", r->fmt->iformat ? r->fmt->iformat->name : "?");
}

static double frame_seconds(cff_reader *r) {
    int64_t ts = r->frame->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE) ts = r->frame->pts;
    if (ts == AV_NOPTS_VALUE) {
        AVRational rate = r->st->avg_frame_rate;
        double fps = (rate.num > 0 && rate.den > 0) ? av_q2d(rate) : 25.0;
        return (double)r->frame_counter / fps;
    }
    int64_t start = r->st->start_time != AV_NOPTS_VALUE ? r->st->start_time : 0;
    return (double)(ts - start) * av_q2d(r->st->time_base);
}

int cff_reader_decode(cff_reader *r, double *seconds, double *duration) {
    for (;;) {
        int ret = avcodec_receive_frame(r->dec, r->frame);
        if (ret >= 0) {
            r->have_frame = 1;
            if (seconds) *seconds = frame_seconds(r);
            if (duration) {
#if LIBAVUTIL_VERSION_MAJOR >= 58
                int64_t d = r->frame->duration;
#else
                int64_t d = r->frame->pkt_duration;
#endif
                *duration = d > 0 ? (double)d * av_q2d(r->st->time_base) : 0;
            }
            r->frame_counter++;
            return 1;
        }
        if (ret == AVERROR_EOF) { r->have_frame = 0; return 0; }
        if (ret != AVERROR(EAGAIN)) { set_err(r->err, sizeof r->err, "decoding failed", ret); return ret; }
        if (r->sent_eof) { r->have_frame = 0; return 0; }
        // The decoder wants input: feed the next packet of the video stream.
        for (;;) {
            ret = av_read_frame(r->fmt, r->pkt);
            if (ret == AVERROR_EOF) {
                r->sent_eof = 1;
                ret = avcodec_send_packet(r->dec, NULL);
                if (ret < 0 && ret != AVERROR_EOF) { set_err(r->err, sizeof r->err, "flushing the decoder failed", ret); return ret; }
                break;
            }
            if (ret < 0) { set_err(r->err, sizeof r->err, "reading a packet failed", ret); return ret; }
            if (r->pkt->stream_index != r->vindex) { av_packet_unref(r->pkt); continue; }
            ret = avcodec_send_packet(r->dec, r->pkt);
            av_packet_unref(r->pkt);
            if (ret < 0 && ret != AVERROR(EAGAIN)) {
                char what[96];
                snprintf(what, sizeof what, "decoding packet near frame %lld failed", (long long)r->frame_counter);
                set_err(r->err, sizeof r->err, what, ret);
                return ret;
            }
            break;
        }
    }
}

int cff_reader_convert_rgb(cff_reader *r, uint8_t *dst, int dst_w, int dst_h) {
    if (!r->have_frame) { snprintf(r->err, sizeof r->err, "no decoded frame to convert"); return AVERROR(EINVAL); }
    AVFrame *f = r->frame;
    // Bicubic with full chroma interpolation: the best conversion swscale offers for 4:2:0 sources.
    r->sws = sws_getCachedContext(r->sws, f->width, f->height, (enum AVPixelFormat)f->format,
                                  dst_w, dst_h, AV_PIX_FMT_RGB24,
                                  SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP,
                                  NULL, NULL, NULL);
    if (!r->sws) { snprintf(r->err, sizeof r->err, "cannot convert pixel format %s to rgb24", av_get_pix_fmt_name((enum AVPixelFormat)f->format)); return AVERROR(EINVAL); }
    uint8_t *planes[4] = { dst, NULL, NULL, NULL };
    int strides[4] = { dst_w * 3, 0, 0, 0 };
    int h = sws_scale(r->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, strides);
    if (h != dst_h) { snprintf(r->err, sizeof r->err, "pixel conversion produced %d of %d rows", h, dst_h); return AVERROR(EINVAL); }
    return 0;
}

int cff_reader_seek(cff_reader *r, double seconds) {
    int64_t start = r->st->start_time != AV_NOPTS_VALUE ? r->st->start_time : 0;
    int64_t ts = start + (int64_t)(seconds / av_q2d(r->st->time_base));
    int ret = av_seek_frame(r->fmt, r->vindex, ts, AVSEEK_FLAG_BACKWARD);
    if (ret < 0) ret = av_seek_frame(r->fmt, r->vindex, ts, AVSEEK_FLAG_BACKWARD | AVSEEK_FLAG_ANY);
    if (ret < 0) { set_err(r->err, sizeof r->err, "seek failed", ret); return ret; }
    avcodec_flush_buffers(r->dec);
    r->sent_eof = 0;
    r->have_frame = 0;
    return 0;
}

int64_t cff_reader_count_packets(cff_reader *r) {
    int ret = av_seek_frame(r->fmt, r->vindex, r->st->start_time != AV_NOPTS_VALUE ? r->st->start_time : 0, AVSEEK_FLAG_BACKWARD);
    if (ret < 0) { set_err(r->err, sizeof r->err, "rewind failed", ret); return ret; }
    int64_t n = 0;
    for (;;) {
        ret = av_read_frame(r->fmt, r->pkt);
        if (ret == AVERROR_EOF) break;
        if (ret < 0) { set_err(r->err, sizeof r->err, "reading a packet failed", ret); return ret; }
        // Packets before an edit list's start are decoded but never shown.
        if (r->pkt->stream_index == r->vindex && !(r->pkt->flags & AV_PKT_FLAG_DISCARD)) n++;
        av_packet_unref(r->pkt);
    }
    ret = cff_reader_seek(r, 0);
    return ret < 0 ? ret : n;
}

const char *cff_reader_error(const cff_reader *r) { return r->err; }

void cff_reader_close(cff_reader *r) {
    if (!r) return;
    if (r->sws) sws_freeContext(r->sws);
    av_frame_free(&r->frame);
    av_packet_free(&r->pkt);
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->fmt);
    av_free(r);
}
