// writer.c — RGB frames → H.264 (or MPEG-4 Part 2) in mp4, with the audio stream of another file
// copied in (see cffmpeg.h). Packet durations are set before timestamps are rescaled so the last
// frame keeps its length (otherwise mp4 drops it).
#include "cffmpeg.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

struct cff_writer {
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *vst;
    struct SwsContext *sws;
    AVFrame *frame;
    AVPacket *pkt;
    int width, height;
    int64_t next_pts;
    int finished;
    int header_written;
    char codec_name[32];
    char err[512];
    // Audio copy.
    AVFormatContext *ain;
    int aindex;
    AVStream *ast;
    AVPacket *apkt;
    int apending;   // apkt holds a packet not yet written
    int adone;
    int64_t astart;
};

static void werr(cff_writer *w, const char *what, int code) {
    char reason[256];
    cff_error_string(code, reason, sizeof reason);
    snprintf(w->err, sizeof w->err, "%s: %s", what, reason);
}

static void copy_err(char *dst, size_t cap, const char *src) {
    if (dst && cap) snprintf(dst, cap, "%s", src);
}

static int open_audio(cff_writer *w, const char *audio_src) {
    int ret = avformat_open_input(&w->ain, audio_src, NULL, NULL);
    if (ret < 0) { werr(w, "cannot open the audio source", ret); return ret; }
    ret = avformat_find_stream_info(w->ain, NULL);
    if (ret < 0) { werr(w, "cannot read the audio source's stream info", ret); return ret; }
    ret = av_find_best_stream(w->ain, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    if (ret < 0) { w->adone = 1; return 0; }  // no audio: nothing to copy
    w->aindex = ret;
    AVStream *in = w->ain->streams[ret];
    if (avformat_query_codec(w->oc->oformat, in->codecpar->codec_id, FF_COMPLIANCE_NORMAL) != 1) {
        snprintf(w->err, sizeof w->err, "audio codec %s cannot be stored in %s",
                 avcodec_get_name(in->codecpar->codec_id), w->oc->oformat->name);
        return AVERROR(EINVAL);
    }
    w->ast = avformat_new_stream(w->oc, NULL);
    if (!w->ast) { werr(w, "cannot add the audio stream", AVERROR(ENOMEM)); return AVERROR(ENOMEM); }
    ret = avcodec_parameters_copy(w->ast->codecpar, in->codecpar);
    if (ret < 0) { werr(w, "cannot copy the audio parameters", ret); return ret; }
    w->ast->codecpar->codec_tag = 0;
    w->ast->time_base = in->time_base;
    w->astart = in->start_time != AV_NOPTS_VALUE ? in->start_time : 0;
    w->apkt = av_packet_alloc();
    return w->apkt ? 0 : AVERROR(ENOMEM);
}

cff_writer *cff_writer_open(const char *path, int width, int height, int fps_num, int fps_den, int crf,
                            const char *preset, const char *codec, const char *audio_src, char *err, size_t errlen) {
    // Errors come back through `err`; FFmpeg's own chatter (x264's per-file statistics) stays quiet.
    if (av_log_get_level() > AV_LOG_ERROR) av_log_set_level(AV_LOG_ERROR);
    cff_writer *w = av_mallocz(sizeof *w);
    if (!w) { copy_err(err, errlen, "out of memory"); return NULL; }
    w->width = width;
    w->height = height;
    int ret = avformat_alloc_output_context2(&w->oc, NULL, NULL, path);
    if (ret < 0 || !w->oc) { werr(w, "cannot choose an output format from the file name", ret); goto fail; }

    const AVCodec *vc = NULL;
    if (codec && codec[0]) {
        vc = avcodec_find_encoder_by_name(codec);
        if (!vc) { snprintf(w->err, sizeof w->err, "encoder %s is not available in this FFmpeg", codec); goto fail; }
    } else {
        vc = avcodec_find_encoder_by_name("libx264");
        if (!vc) vc = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
        if (!vc) { snprintf(w->err, sizeof w->err, "neither libx264 nor mpeg4 encoders are available"); goto fail; }
    }
    snprintf(w->codec_name, sizeof w->codec_name, "%s", vc->name);

    w->vst = avformat_new_stream(w->oc, NULL);
    w->enc = avcodec_alloc_context3(vc);
    if (!w->vst || !w->enc) { werr(w, "cannot allocate the encoder", AVERROR(ENOMEM)); goto fail; }
    w->enc->width = width;
    w->enc->height = height;
    w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->enc->time_base = (AVRational){ fps_den, fps_num };
    w->enc->framerate = (AVRational){ fps_num, fps_den };
    w->enc->thread_count = 0;
    if (vc->id == AV_CODEC_ID_H264) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", crf);
        av_opt_set(w->enc->priv_data, "crf", buf, 0);
        av_opt_set(w->enc->priv_data, "preset", preset && preset[0] ? preset : "medium", 0);
    } else {
        // MPEG-4 Part 2 has no CRF: a fixed quantiser of roughly the same quality (CRF 18 → q 2).
        int q = crf <= 18 ? 2 : (crf - 14) / 2;
        if (q > 31) q = 31;
        w->enc->flags |= AV_CODEC_FLAG_QSCALE;
        w->enc->global_quality = FF_QP2LAMBDA * q;
        w->enc->gop_size = 12;
    }
    if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    ret = avcodec_open2(w->enc, vc, NULL);
    if (ret < 0) { werr(w, "cannot open the video encoder", ret); goto fail; }
    ret = avcodec_parameters_from_context(w->vst->codecpar, w->enc);
    if (ret < 0) { werr(w, "cannot set the stream parameters", ret); goto fail; }
    w->vst->time_base = w->enc->time_base;
    w->vst->avg_frame_rate = w->enc->framerate;

    w->aindex = -1;
    if (audio_src && audio_src[0]) {
        if (open_audio(w, audio_src) < 0) goto fail;
    } else {
        w->adone = 1;
    }

    w->frame = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->frame || !w->pkt) { werr(w, "out of memory", AVERROR(ENOMEM)); goto fail; }
    w->frame->format = AV_PIX_FMT_YUV420P;
    w->frame->width = width;
    w->frame->height = height;
    ret = av_frame_get_buffer(w->frame, 0);
    if (ret < 0) { werr(w, "cannot allocate a frame", ret); goto fail; }
    w->sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
    if (!w->sws) { snprintf(w->err, sizeof w->err, "cannot convert rgb24 to yuv420p at %dx%d", width, height); goto fail; }

    if (!(w->oc->oformat->flags & AVFMT_NOFILE)) {
        ret = avio_open(&w->oc->pb, path, AVIO_FLAG_WRITE);
        if (ret < 0) { werr(w, "cannot create the file", ret); goto fail; }
    }
    ret = avformat_write_header(w->oc, NULL);
    if (ret < 0) { werr(w, "cannot write the header", ret); goto fail; }
    w->header_written = 1;
    // The muxer may change stream time bases in write_header; packets are rescaled afterwards.
    return w;

fail:
    copy_err(err, errlen, w->err);
    cff_writer_free(w);
    return NULL;
}

/// Reads the next audio packet into apkt (apending = 1), or marks the audio as done.
static int next_audio(cff_writer *w) {
    while (!w->adone && !w->apending) {
        int ret = av_read_frame(w->ain, w->apkt);
        if (ret == AVERROR_EOF) { w->adone = 1; break; }
        if (ret < 0) { werr(w, "reading the audio source failed", ret); return ret; }
        if (w->apkt->stream_index != w->aindex) { av_packet_unref(w->apkt); continue; }
        w->apending = 1;
    }
    return 0;
}

/// Writes pending audio packets that start before `until` seconds (relative to the audio start).
static int copy_audio(cff_writer *w, double until) {
    if (w->aindex < 0) return 0;
    AVRational itb = w->ain->streams[w->aindex]->time_base;
    for (;;) {
        int ret = next_audio(w);
        if (ret < 0) return ret;
        if (!w->apending) return 0;
        int64_t ts = w->apkt->pts != AV_NOPTS_VALUE ? w->apkt->pts : w->apkt->dts;
        double t = ts == AV_NOPTS_VALUE ? 0 : (double)(ts - w->astart) * av_q2d(itb);
        if (t >= until) return 0;
        if (w->apkt->pts != AV_NOPTS_VALUE) w->apkt->pts -= w->astart;
        if (w->apkt->dts != AV_NOPTS_VALUE) w->apkt->dts -= w->astart;
        av_packet_rescale_ts(w->apkt, itb, w->ast->time_base);
        w->apkt->stream_index = w->ast->index;
        w->apkt->pos = -1;
        ret = av_interleaved_write_frame(w->oc, w->apkt);  // takes ownership of the packet's data
        w->apending = 0;
        if (ret < 0) { werr(w, "writing an audio packet failed", ret); return ret; }
    }
}

static int drain(cff_writer *w) {
    for (;;) {
        int ret = avcodec_receive_packet(w->enc, w->pkt);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return 0;
        if (ret < 0) { werr(w, "encoding failed", ret); return ret; }
        // Duration in codec ticks before rescaling: the mp4 muxer otherwise gives the last frame no length.
        w->pkt->duration = 1;
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->vst->time_base);
        w->pkt->stream_index = w->vst->index;
        double vt = (double)w->pkt->dts * av_q2d(w->vst->time_base);
        ret = copy_audio(w, vt);
        if (ret < 0) { av_packet_unref(w->pkt); return ret; }
        ret = av_interleaved_write_frame(w->oc, w->pkt);
        if (ret < 0) { werr(w, "writing a video packet failed", ret); return ret; }
    }
}

int cff_writer_write_rgb(cff_writer *w, const uint8_t *rgb) {
    if (w->finished) { snprintf(w->err, sizeof w->err, "writer already finished"); return AVERROR(EINVAL); }
    int ret = av_frame_make_writable(w->frame);
    if (ret < 0) { werr(w, "frame not writable", ret); return ret; }
    const uint8_t *src[4] = { rgb, NULL, NULL, NULL };
    int stride[4] = { w->width * 3, 0, 0, 0 };
    sws_scale(w->sws, src, stride, 0, w->height, w->frame->data, w->frame->linesize);
    w->frame->pts = w->next_pts++;
    ret = avcodec_send_frame(w->enc, w->frame);
    if (ret < 0) { werr(w, "sending a frame to the encoder failed", ret); return ret; }
    return drain(w);
}

int cff_writer_finish(cff_writer *w) {
    if (w->finished) return 0;
    w->finished = 1;
    int ret = avcodec_send_frame(w->enc, NULL);
    if (ret < 0 && ret != AVERROR_EOF) { werr(w, "flushing the encoder failed", ret); return ret; }
    ret = drain(w);
    if (ret < 0) return ret;
    // Audio is cut at the end of the last video frame.
    double end = (double)w->next_pts * av_q2d(w->enc->time_base);
    ret = copy_audio(w, end);
    if (ret < 0) return ret;
    ret = av_write_trailer(w->oc);
    if (ret < 0) { werr(w, "writing the trailer failed", ret); return ret; }
    if (!(w->oc->oformat->flags & AVFMT_NOFILE)) {
        ret = avio_closep(&w->oc->pb);
        if (ret < 0) { werr(w, "closing the file failed", ret); return ret; }
    }
    return 0;
}

const char *cff_writer_error(const cff_writer *w) { return w->err; }
const char *cff_writer_codec(const cff_writer *w) { return w->codec_name; }
int cff_writer_has_audio(const cff_writer *w) { return w->ast != NULL; }

void cff_writer_free(cff_writer *w) {
    if (!w) return;
    if (w->oc && w->oc->pb && !(w->oc->oformat->flags & AVFMT_NOFILE)) avio_closep(&w->oc->pb);
    if (w->sws) sws_freeContext(w->sws);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    av_packet_free(&w->apkt);
    avcodec_free_context(&w->enc);
    if (w->oc) avformat_free_context(w->oc);
    if (w->ain) avformat_close_input(&w->ain);
    av_free(w);
}
