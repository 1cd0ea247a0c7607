// image.c — still-image encoding (PNG, JPEG) with FFmpeg's codecs; one packet of these codecs is
// a complete image file, so no muxer is needed. Decoding goes through cff_reader (image2 demuxer).
#include "cffmpeg.h"

#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/mem.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

static void ierr(char *dst, size_t cap, const char *what, int code) {
    if (!dst || cap == 0) return;
    char reason[256];
    cff_error_string(code, reason, sizeof reason);
    snprintf(dst, cap, "%s: %s", what, reason);
}

int cff_image_encode(const uint8_t *rgb, int width, int height, int kind, int jpeg_q,
                     uint8_t **out, size_t *out_len, char *err, size_t errlen) {
    *out = NULL;
    *out_len = 0;
    enum AVCodecID id = kind == 0 ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG;
    // Full-range 4:4:4 JPEG keeps small images' colours; PNG stores RGB as is.
    enum AVPixelFormat fmt = kind == 0 ? AV_PIX_FMT_RGB24 : AV_PIX_FMT_YUVJ444P;
    const AVCodec *codec = avcodec_find_encoder(id);
    if (!codec) { ierr(err, errlen, kind == 0 ? "no PNG encoder" : "no JPEG encoder", AVERROR_ENCODER_NOT_FOUND); return AVERROR_ENCODER_NOT_FOUND; }
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVFrame *f = av_frame_alloc();
    AVPacket *p = av_packet_alloc();
    struct SwsContext *sws = NULL;
    int ret = AVERROR(ENOMEM);
    if (!c || !f || !p) { ierr(err, errlen, "out of memory", ret); goto done; }
    c->width = width;
    c->height = height;
    c->pix_fmt = fmt;
    c->time_base = (AVRational){ 1, 25 };
    if (kind != 0) {
        int q = jpeg_q < 1 ? 1 : (jpeg_q > 31 ? 31 : jpeg_q);
        c->flags |= AV_CODEC_FLAG_QSCALE;
        c->global_quality = FF_QP2LAMBDA * q;
        c->qmin = c->qmax = q;
        c->color_range = AVCOL_RANGE_JPEG;
    }
    ret = avcodec_open2(c, codec, NULL);
    if (ret < 0) { ierr(err, errlen, "cannot open the image encoder", ret); goto done; }
    f->format = fmt;
    f->width = width;
    f->height = height;
    ret = av_frame_get_buffer(f, 0);
    if (ret < 0) { ierr(err, errlen, "cannot allocate a frame", ret); goto done; }
    if (kind == 0) {
        for (int y = 0; y < height; y++) memcpy(f->data[0] + (size_t)y * f->linesize[0], rgb + (size_t)y * width * 3, (size_t)width * 3);
    } else {
        sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, fmt,
                             SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
        if (!sws) { ret = AVERROR(EINVAL); ierr(err, errlen, "cannot convert to yuvj444p", ret); goto done; }
        const uint8_t *src[4] = { rgb, NULL, NULL, NULL };
        int stride[4] = { width * 3, 0, 0, 0 };
        sws_scale(sws, src, stride, 0, height, f->data, f->linesize);
    }
    f->pts = 0;
    ret = avcodec_send_frame(c, f);
    if (ret >= 0) ret = avcodec_send_frame(c, NULL);
    if (ret < 0) { ierr(err, errlen, "encoding the image failed", ret); goto done; }
    ret = avcodec_receive_packet(c, p);
    if (ret < 0) { ierr(err, errlen, "encoding the image produced no data", ret); goto done; }
    *out = av_malloc((size_t)p->size);
    if (!*out) { ret = AVERROR(ENOMEM); ierr(err, errlen, "out of memory", ret); goto done; }
    memcpy(*out, p->data, (size_t)p->size);
    *out_len = (size_t)p->size;
    ret = 0;
done:
    if (sws) sws_freeContext(sws);
    av_packet_free(&p);
    av_frame_free(&f);
    avcodec_free_context(&c);
    return ret;
}
