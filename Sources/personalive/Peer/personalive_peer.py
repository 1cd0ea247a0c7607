# personalive_peer.py — PyTorch-eager peer of PersonaLive's denoising network and stage-1 training step,
# used by `personalive bench compare` to time the same work in PyTorch eager as in the Swift port.
#
# Mirrors (PersonaLive fork dbodik-git/PersonaLivefork @ e84ad694, Moore-AnimateAnyone lineage, diffusers 0.27):
#   * src/models/unet_3d.py            UNet3DConditionModel
#   * src/models/unet_3d_blocks.py     CrossAttnDownBlock3D, DownBlock3D, UNetMidBlock3DCrossAttn,
#                                      UpBlock3D, CrossAttnUpBlock3D
#   * src/models/resnet.py             InflatedConv3d, InflatedGroupNorm, Downsample3D, Upsample3D, ResnetBlock3D
#   * src/models/transformer_3d.py     Transformer3DModel
#   * src/models/attention.py          TemporalBasicTransformerBlock (with the read-mode hack of
#                                      src/models/mutual_self_attention.py built in)
#   * src/models/motion_module.py      VanillaTemporalModule, TemporalTransformer3DModel,
#                                      TemporalTransformerBlock, VersatileAttention, PositionalEncoding
#                                      (Spatial_Cross motion modules, Temporal_Self temporal modules)
#   * src/models/mutual_self_attention.py  ReferenceAttentionControl (write / read, fusion_blocks,
#                                      update(drop_ratio) bank token drop, update_hkf keyframes, clear)
#   * src/models/pose_guider.py        PoseGuider
#   * src/models/unet_2d_condition.py  reference UNet = diffusers UNet2DConditionModel without
#                                      conv_norm_out / conv_out (build_reference_unet)
#   * train_stage1.py                  latent-space part of one iteration (stage1_step, get_x0_from_eps)
#   * src/wrapper.py                   one streaming-window denoiser call (window_pass) and the DDIM
#                                      per-frame step of the streaming loop (ddim_step)
# Video tensors are (b, c, f, h, w); per-frame timesteps are (b*f,) in (b f) order.
# Importing this module has no side effects.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock, FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

__all__ = [
    "InflatedConv3d", "InflatedGroupNorm", "Downsample3D", "Upsample3D", "ResnetBlock3D",
    "TemporalBasicTransformerBlock", "Transformer3DModel", "VanillaTemporalModule",
    "CrossAttnDownBlock3D", "DownBlock3D", "UNetMidBlock3DCrossAttn", "UpBlock3D", "CrossAttnUpBlock3D",
    "UNet3DConditionModel", "PoseGuider", "build_reference_unet", "ReferenceAttentionControl",
    "DDIMHelper", "get_x0_from_eps", "facial_mask", "stage1_step", "window_pass", "ddim_step",
]


def _to_batch(x):
    """b c f h w -> (b f) c h w"""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def _to_video(x, f):
    """(b f) c h w -> b c f h w"""
    bf, c, h, w = x.shape
    return x.reshape(bf // f, f, c, h, w).permute(0, 2, 1, 3, 4)


# ----------------------------------------------------------------------------------------------- resnet.py

class InflatedConv3d(nn.Conv2d):
    """nn.Conv2d applied to every frame of a (b, c, f, h, w) tensor."""

    def forward(self, x):
        return _to_video(super().forward(_to_batch(x)), x.shape[2])


class InflatedGroupNorm(nn.GroupNorm):
    """nn.GroupNorm with per-frame statistics."""

    def forward(self, x):
        return _to_video(super().forward(_to_batch(x)), x.shape[2])


class Downsample3D(nn.Module):
    def __init__(self, channels, use_conv=True, out_channels=None, padding=1, name="conv"):
        super().__init__()
        self.channels = channels
        out_channels = out_channels or channels
        if not use_conv or padding == 0:
            raise NotImplementedError("Downsample3D: only use_conv with padding > 0 (as the reference)")
        self.conv = InflatedConv3d(channels, out_channels, 3, stride=2, padding=padding)

    def forward(self, x):
        return self.conv(x)


class Upsample3D(nn.Module):
    def __init__(self, channels, use_conv=True, out_channels=None, name="conv"):
        super().__init__()
        self.channels = channels
        self.conv = InflatedConv3d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x, output_size=None):
        dtype = x.dtype
        if dtype == torch.bfloat16:
            x = x.to(torch.float32)
        if x.shape[0] >= 64:
            x = x.contiguous()
        if output_size is None:
            x = F.interpolate(x, scale_factor=[1.0, 2.0, 2.0], mode="nearest")
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")
        if dtype == torch.bfloat16:
            x = x.to(dtype)
        return self.conv(x)


def _activation(name):
    if name in ("swish", "silu"):
        return nn.SiLU()
    if name == "mish":
        return nn.Mish()
    raise ValueError(f"unsupported act_fn {name!r}")


class ResnetBlock3D(nn.Module):
    """ResnetBlock2D with inflated conv / norm; the time embedding is per frame when it has b*f rows."""

    def __init__(self, *, in_channels, out_channels=None, conv_shortcut=False, dropout=0.0, temb_channels=512,
                 groups=32, groups_out=None, pre_norm=True, eps=1e-6, non_linearity="swish",
                 time_embedding_norm="default", output_scale_factor=1.0, use_in_shortcut=None,
                 use_inflated_groupnorm=True):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        groups_out = groups_out or groups
        norm_cls = InflatedGroupNorm if use_inflated_groupnorm else nn.GroupNorm
        self.norm1 = norm_cls(num_groups=groups, num_channels=in_channels, eps=eps, affine=True)
        self.conv1 = InflatedConv3d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if temb_channels is not None:
            if time_embedding_norm == "default":
                self.time_emb_proj = nn.Linear(temb_channels, out_channels)
            elif time_embedding_norm == "scale_shift":
                self.time_emb_proj = nn.Linear(temb_channels, 2 * out_channels)
            else:
                raise ValueError(f"unknown time_embedding_norm {time_embedding_norm!r}")
        else:
            self.time_emb_proj = None
        self.norm2 = norm_cls(num_groups=groups_out, num_channels=out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = InflatedConv3d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = _activation(non_linearity)
        self.use_in_shortcut = (in_channels != out_channels) if use_in_shortcut is None else use_in_shortcut
        self.conv_shortcut = (InflatedConv3d(in_channels, out_channels, kernel_size=1) if self.use_in_shortcut
                              else None)

    def forward(self, input_tensor, temb):
        b, _, f = input_tensor.shape[:3]
        h = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        if temb is not None and self.time_emb_proj is not None:
            temb = self.time_emb_proj(self.nonlinearity(temb))
            if temb.shape[0] == b * f:
                temb = temb.reshape(b, f, -1).permute(0, 2, 1)[:, :, :, None, None]  # '(b f) c -> b c f'
            else:
                temb = temb[:, :, None, None, None]
        else:
            temb = None
        if temb is not None and self.time_embedding_norm == "default":
            h = h + temb
        h = self.norm2(h)
        if temb is not None and self.time_embedding_norm == "scale_shift":
            scale, shift = torch.chunk(temb, 2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(self.nonlinearity(h)))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + h) / self.output_scale_factor


# ------------------------------------------------------------------ attention.py / transformer_3d.py

class TemporalBasicTransformerBlock(nn.Module):
    """Spatial transformer block of the 3D UNet. Reference attention (ReferenceAttentionControl read
    mode) is built in: when `bank` (list of (b, L, C)) or `kv_bank` ((b, n, L, C)) is set, attn1's keys /
    values are [norm1(h), bank repeated per frame, kv_bank repeated per frame], queries norm1(h)."""

    def __init__(self, dim, num_attention_heads, attention_head_dim, dropout=0.0, cross_attention_dim=None,
                 activation_fn="geglu", attention_bias=False, upcast_attention=False,
                 unet_use_temporal_attention=False):
        super().__init__()
        self.attn1 = Attention(query_dim=dim, heads=num_attention_heads, dim_head=attention_head_dim,
                               dropout=dropout, bias=attention_bias, upcast_attention=upcast_attention)
        self.norm1 = nn.LayerNorm(dim)
        if cross_attention_dim is not None:
            self.attn2 = Attention(query_dim=dim, cross_attention_dim=cross_attention_dim, heads=num_attention_heads,
                                   dim_head=attention_head_dim, dropout=dropout, bias=attention_bias,
                                   upcast_attention=upcast_attention)
            self.norm2 = nn.LayerNorm(dim)
        else:
            self.attn2 = None
            self.norm2 = None
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn)
        self.norm3 = nn.LayerNorm(dim)
        self.unet_use_temporal_attention = unet_use_temporal_attention
        if unet_use_temporal_attention:
            self.attn_temp = Attention(query_dim=dim, heads=num_attention_heads, dim_head=attention_head_dim,
                                       dropout=dropout, bias=attention_bias, upcast_attention=upcast_attention)
            nn.init.zeros_(self.attn_temp.to_out[0].weight.data)
            self.norm_temp = nn.LayerNorm(dim)
        # reader state (ReferenceAttentionControl); plain attributes, not in the state dict
        self.bank = []
        self.kv_bank = None

    def forward(self, hidden_states, encoder_hidden_states=None, video_length=1):
        norm_hidden_states = self.norm1(hidden_states)
        if self.bank or self.kv_bank is not None:
            extra = [d.unsqueeze(1).repeat(1, video_length, 1, 1).flatten(0, 1) for d in self.bank]  # b t l c -> (b t) l c
            if self.kv_bank is not None:
                kv = self.kv_bank  # (b, n, l, c) -> (b t) (n l) c
                kv = kv.unsqueeze(1).repeat(1, video_length, 1, 1, 1)
                extra.append(kv.reshape(kv.shape[0] * video_length, kv.shape[2] * kv.shape[3], kv.shape[4]))
            kv_states = torch.cat([norm_hidden_states] + extra, dim=1)
            hidden_states = self.attn1(norm_hidden_states, encoder_hidden_states=kv_states) + hidden_states
        else:
            hidden_states = self.attn1(norm_hidden_states) + hidden_states
        if self.attn2 is not None:
            hidden_states = self.attn2(self.norm2(hidden_states), encoder_hidden_states=encoder_hidden_states) \
                + hidden_states
        hidden_states = self.ff(self.norm3(hidden_states)) + hidden_states
        if self.unet_use_temporal_attention:
            d = hidden_states.shape[1]
            bf, c = hidden_states.shape[0], hidden_states.shape[2]
            b = bf // video_length
            t = hidden_states.reshape(b, video_length, d, c).permute(0, 2, 1, 3).reshape(b * d, video_length, c)
            t = self.attn_temp(self.norm_temp(t)) + t
            hidden_states = t.reshape(b, d, video_length, c).permute(0, 2, 1, 3).reshape(bf, d, c)
        return hidden_states


class Transformer3DModel(nn.Module):
    def __init__(self, num_attention_heads=16, attention_head_dim=88, in_channels=None, num_layers=1, dropout=0.0,
                 norm_num_groups=32, cross_attention_dim=None, attention_bias=False, activation_fn="geglu",
                 use_linear_projection=False, upcast_attention=False, unet_use_temporal_attention=False):
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.in_channels = in_channels
        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=1e-6, affine=True)
        self.proj_in = (nn.Linear(in_channels, inner) if use_linear_projection
                        else nn.Conv2d(in_channels, inner, kernel_size=1, stride=1, padding=0))
        self.transformer_blocks = nn.ModuleList([
            TemporalBasicTransformerBlock(inner, num_attention_heads, attention_head_dim, dropout=dropout,
                                          cross_attention_dim=cross_attention_dim, activation_fn=activation_fn,
                                          attention_bias=attention_bias, upcast_attention=upcast_attention,
                                          unet_use_temporal_attention=unet_use_temporal_attention)
            for _ in range(num_layers)])
        self.proj_out = (nn.Linear(inner, in_channels) if use_linear_projection
                         else nn.Conv2d(inner, in_channels, kernel_size=1, stride=1, padding=0))

    def forward(self, hidden_states, encoder_hidden_states=None):
        f = hidden_states.shape[2]
        hidden_states = _to_batch(hidden_states)
        if encoder_hidden_states is not None and encoder_hidden_states.shape[0] != hidden_states.shape[0]:
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(f, dim=0)  # b n c -> (b f) n c
        batch, _, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        if not self.use_linear_projection:
            hidden_states = self.proj_in(hidden_states)
            inner = hidden_states.shape[1]
            hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner)
        else:
            inner = hidden_states.shape[1]
            hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner)
            hidden_states = self.proj_in(hidden_states)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, encoder_hidden_states=encoder_hidden_states, video_length=f)
        if not self.use_linear_projection:
            hidden_states = hidden_states.reshape(batch, height, width, inner).permute(0, 3, 1, 2).contiguous()
            hidden_states = self.proj_out(hidden_states)
        else:
            hidden_states = self.proj_out(hidden_states)
            hidden_states = hidden_states.reshape(batch, height, width, inner).permute(0, 3, 1, 2).contiguous()
        return _to_video(hidden_states + residual, f)


# ------------------------------------------------------------------------------------ motion_module.py

class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.0, max_len=24):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_len, d_model)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.size(1)])


class VersatileAttention(Attention):
    """diffusers Attention run over the tokens of each frame (Spatial) or the frames of each location
    (Temporal); *_Cross blocks attend to the motion tokens."""

    def __init__(self, attention_mode=None, cross_frame_attention_mode=None, temporal_position_encoding=False,
                 temporal_position_encoding_max_len=24, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if attention_mode not in ("Temporal", "Spatial"):
            raise ValueError(f"unknown attention mode {attention_mode!r}")
        self.attention_mode = attention_mode
        self.is_cross_attention = kwargs.get("cross_attention_dim") is not None
        self.pos_encoder = (PositionalEncoding(kwargs["query_dim"], dropout=0.0,
                                               max_len=temporal_position_encoding_max_len)
                            if temporal_position_encoding and attention_mode == "Temporal" else None)

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, video_length=None):
        if self.attention_mode == "Temporal":
            d = hidden_states.shape[1]
            bf, c = hidden_states.shape[0], hidden_states.shape[2]
            b = bf // video_length
            hidden_states = hidden_states.reshape(b, video_length, d, c).permute(0, 2, 1, 3).reshape(
                b * d, video_length, c)  # (b f) d c -> (b d) f c
            if self.pos_encoder is not None:
                hidden_states = self.pos_encoder(hidden_states)
            if encoder_hidden_states is not None:
                encoder_hidden_states = encoder_hidden_states.repeat_interleave(d, dim=0)  # b n c -> (b d) n c
        else:
            if encoder_hidden_states is not None and encoder_hidden_states.dim() == 4:
                encoder_hidden_states = encoder_hidden_states.flatten(0, 1)  # b d n c -> (b d) n c
        out = super().forward(hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask)
        if self.attention_mode == "Temporal":
            out = out.reshape(b, d, video_length, c).permute(0, 2, 1, 3).reshape(bf, d, c)  # (b d) f c -> (b f) d c
        return out


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim, num_attention_heads, attention_head_dim, attention_block_types=("Temporal_Self",),
                 dropout=0.0, activation_fn="geglu", attention_bias=False, upcast_attention=False,
                 cross_attention_dim=768, temporal_position_encoding=False, temporal_position_encoding_max_len=24):
        super().__init__()
        blocks, norms = [], []
        for block_name in attention_block_types:
            mode, kind = block_name.split("_")
            blocks.append(VersatileAttention(
                attention_mode=mode, temporal_position_encoding=temporal_position_encoding,
                temporal_position_encoding_max_len=temporal_position_encoding_max_len,
                query_dim=dim, cross_attention_dim=cross_attention_dim if kind == "Cross" else None,
                heads=num_attention_heads, dim_head=attention_head_dim, dropout=dropout, bias=attention_bias,
                upcast_attention=upcast_attention))
            norms.append(nn.LayerNorm(dim))
        self.attention_blocks = nn.ModuleList(blocks)
        self.norms = nn.ModuleList(norms)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, video_length=None):
        for attention_block, norm in zip(self.attention_blocks, self.norms):
            hidden_states = attention_block(
                norm(hidden_states),
                encoder_hidden_states=encoder_hidden_states if attention_block.is_cross_attention else None,
                video_length=video_length) + hidden_states
        return self.ff(self.ff_norm(hidden_states)) + hidden_states


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, in_channels, num_attention_heads, attention_head_dim, num_layers,
                 attention_block_types=("Temporal_Self", "Temporal_Self"), dropout=0.0, norm_num_groups=32,
                 cross_attention_dim=768, activation_fn="geglu", attention_bias=False, upcast_attention=False,
                 temporal_position_encoding=False, temporal_position_encoding_max_len=24):
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner)
        self.transformer_blocks = nn.ModuleList([
            TemporalTransformerBlock(inner, num_attention_heads, attention_head_dim,
                                     attention_block_types=attention_block_types, dropout=dropout,
                                     activation_fn=activation_fn, attention_bias=attention_bias,
                                     upcast_attention=upcast_attention, cross_attention_dim=cross_attention_dim,
                                     temporal_position_encoding=temporal_position_encoding,
                                     temporal_position_encoding_max_len=temporal_position_encoding_max_len)
            for _ in range(num_layers)])
        self.proj_out = nn.Linear(inner, in_channels)

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None):
        f = hidden_states.shape[2]
        hidden_states = _to_batch(hidden_states)
        batch, channel, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        inner = hidden_states.shape[1]
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner)
        hidden_states = self.proj_in(hidden_states)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, encoder_hidden_states=encoder_hidden_states, video_length=f)
        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch, height, width, inner).permute(0, 3, 1, 2).contiguous()
        return _to_video(hidden_states + residual, f)


class VanillaTemporalModule(nn.Module):
    def __init__(self, in_channels, num_attention_heads=8, num_transformer_block=2,
                 attention_block_types=("Temporal_Self", "Temporal_Self"), cross_frame_attention_mode=None,
                 temporal_position_encoding=False, temporal_position_encoding_max_len=24,
                 temporal_attention_dim_div=1, zero_initialize=True, cross_attention_dim=768):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(
            in_channels=in_channels, num_attention_heads=num_attention_heads,
            attention_head_dim=in_channels // num_attention_heads // temporal_attention_dim_div,
            num_layers=num_transformer_block, attention_block_types=tuple(attention_block_types),
            cross_attention_dim=cross_attention_dim, temporal_position_encoding=temporal_position_encoding,
            temporal_position_encoding_max_len=temporal_position_encoding_max_len)
        if zero_initialize:
            nn.init.zeros_(self.temporal_transformer.proj_out.weight)
            nn.init.zeros_(self.temporal_transformer.proj_out.bias)

    def forward(self, input_tensor, temb=None, encoder_hidden_states=None, attention_mask=None):
        return self.temporal_transformer(input_tensor, encoder_hidden_states, attention_mask)


def _temporal_module(in_channels, kwargs):
    kw = dict(kwargs or {})
    kw.pop("in_channels", None)
    return VanillaTemporalModule(in_channels=in_channels, **kw)


# ------------------------------------------------------------------------------------ unet_3d_blocks.py

class _Stage(nn.Module):
    """Shared construction of the per-layer motion / temporal modules of one UNet stage."""

    def _stage_modules(self, n, channels, motion_kwargs, temporal_kwargs):
        self.motion_modules = nn.ModuleList(
            [_temporal_module(channels, motion_kwargs) for _ in range(n)] if motion_kwargs is not None else [])
        self.temporal_modules = nn.ModuleList(
            [_temporal_module(channels, temporal_kwargs) for _ in range(n)] if temporal_kwargs is not None else [])

    def _after(self, h, i, temb, motion):
        if i < len(self.motion_modules):
            h = self.motion_modules[i](h, temb, encoder_hidden_states=motion)
        if i < len(self.temporal_modules):
            h = self.temporal_modules[i](h, temb, encoder_hidden_states=None)
        return h


class _Settings(dict):
    def resnet(self, cin, cout, output_scale_factor=1.0):
        return ResnetBlock3D(in_channels=cin, out_channels=cout, temb_channels=self["temb_channels"],
                             eps=self["resnet_eps"], groups=self["resnet_groups"], dropout=0.0,
                             time_embedding_norm=self["resnet_time_scale_shift"],
                             non_linearity=self["resnet_act_fn"], output_scale_factor=output_scale_factor,
                             use_inflated_groupnorm=self["use_inflated_groupnorm"])

    def transformer(self, channels):
        heads = self["num_attention_heads"]
        return Transformer3DModel(heads, channels // heads, in_channels=channels, num_layers=1,
                                  cross_attention_dim=self["cross_attention_dim"],
                                  norm_num_groups=self["resnet_groups"],
                                  use_linear_projection=self["use_linear_projection"],
                                  upcast_attention=self["upcast_attention"],
                                  unet_use_temporal_attention=self["unet_use_temporal_attention"])


class DownBlock3D(_Stage):
    def __init__(self, in_channels, out_channels, num_layers, add_downsample, downsample_padding, s):
        super().__init__()
        self.resnets = nn.ModuleList([s.resnet(in_channels if i == 0 else out_channels, out_channels)
                                      for i in range(num_layers)])
        self._stage_modules(num_layers, out_channels, s["motion"], s["temporal"])
        self.downsamplers = nn.ModuleList(
            [Downsample3D(out_channels, padding=downsample_padding)] if add_downsample else [])

    def forward(self, h, temb=None, clip=None, motion=None):
        outputs = ()
        for i, resnet in enumerate(self.resnets):
            h = self._after(resnet(h, temb), i, temb, motion)
            outputs += (h,)
        for d in self.downsamplers:
            h = d(h)
        if len(self.downsamplers):
            outputs += (h,)
        return h, outputs


class CrossAttnDownBlock3D(_Stage):
    def __init__(self, in_channels, out_channels, num_layers, add_downsample, downsample_padding, s):
        super().__init__()
        self.resnets = nn.ModuleList([s.resnet(in_channels if i == 0 else out_channels, out_channels)
                                      for i in range(num_layers)])
        self.attentions = nn.ModuleList([s.transformer(out_channels) for _ in range(num_layers)])
        self._stage_modules(num_layers, out_channels, s["motion"], s["temporal"])
        self.downsamplers = nn.ModuleList(
            [Downsample3D(out_channels, padding=downsample_padding)] if add_downsample else [])

    def forward(self, h, temb=None, clip=None, motion=None):
        outputs = ()
        for i, (resnet, attn) in enumerate(zip(self.resnets, self.attentions)):
            h = attn(resnet(h, temb), encoder_hidden_states=clip)
            h = self._after(h, i, temb, motion)
            outputs += (h,)
        for d in self.downsamplers:
            h = d(h)
        if len(self.downsamplers):
            outputs += (h,)
        return h, outputs


class UNetMidBlock3DCrossAttn(_Stage):
    def __init__(self, in_channels, output_scale_factor, s, num_layers=1):
        super().__init__()
        self.resnets = nn.ModuleList([s.resnet(in_channels, in_channels, output_scale_factor)
                                      for _ in range(num_layers + 1)])
        self.attentions = nn.ModuleList([s.transformer(in_channels) for _ in range(num_layers)])
        self._stage_modules(num_layers, in_channels, s["motion"], s["temporal"])

    def forward(self, h, temb=None, clip=None, motion=None):
        h = self.resnets[0](h, temb)
        for i, (attn, resnet) in enumerate(zip(self.attentions, self.resnets[1:])):
            h = attn(h, encoder_hidden_states=clip)
            h = self._after(h, i, temb, motion)
            h = resnet(h, temb)
        return h


def _up_resnets(s, num_layers, in_channels, prev_output_channel, out_channels):
    out = []
    for i in range(num_layers):
        skip = in_channels if i == num_layers - 1 else out_channels
        cin = prev_output_channel if i == 0 else out_channels
        out.append(s.resnet(cin + skip, out_channels))
    return nn.ModuleList(out)


class UpBlock3D(_Stage):
    def __init__(self, in_channels, prev_output_channel, out_channels, num_layers, add_upsample, s):
        super().__init__()
        self.resnets = _up_resnets(s, num_layers, in_channels, prev_output_channel, out_channels)
        self._stage_modules(num_layers, out_channels, s["motion"], s["temporal"])
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels)] if add_upsample else [])

    def forward(self, h, res_samples, temb=None, clip=None, motion=None, upsample_size=None):
        for i, resnet in enumerate(self.resnets):
            skip, res_samples = res_samples[-1], res_samples[:-1]
            h = self._after(resnet(torch.cat([h, skip], dim=1), temb), i, temb, motion)
        for u in self.upsamplers:
            h = u(h, upsample_size)
        return h


class CrossAttnUpBlock3D(_Stage):
    def __init__(self, in_channels, prev_output_channel, out_channels, num_layers, add_upsample, s):
        super().__init__()
        self.resnets = _up_resnets(s, num_layers, in_channels, prev_output_channel, out_channels)
        self.attentions = nn.ModuleList([s.transformer(out_channels) for _ in range(num_layers)])
        self._stage_modules(num_layers, out_channels, s["motion"], s["temporal"])
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels)] if add_upsample else [])

    def forward(self, h, res_samples, temb=None, clip=None, motion=None, upsample_size=None):
        for i, (resnet, attn) in enumerate(zip(self.resnets, self.attentions)):
            skip, res_samples = res_samples[-1], res_samples[:-1]
            h = resnet(torch.cat([h, skip], dim=1), temb)
            h = attn(h, encoder_hidden_states=clip)
            h = self._after(h, i, temb, motion)
        for u in self.upsamplers:
            h = u(h, upsample_size)
        return h


# ------------------------------------------------------------------------------------------ unet_3d.py

_UNET3D_DEFAULTS = dict(
    sample_size=None, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
    freq_shift=0, down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                                    "DownBlock3D"),
    mid_block_type="UNetMidBlock3DCrossAttn",
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    only_cross_attention=False, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
    cross_attention_dim=1280, attention_head_dim=8, dual_cross_attention=False, use_linear_projection=False,
    class_embed_type=None, num_class_embeds=None, upcast_attention=False, resnet_time_scale_shift="default",
    use_inflated_groupnorm=False, use_motion_module=False, use_temporal_module=False,
    motion_module_resolutions=(1, 2, 4, 8), motion_module_mid_block=False, motion_module_decoder_only=False,
    motion_module_type=None, temporal_module_type=None, motion_module_kwargs=None, temporal_module_kwargs=None,
    unet_use_cross_frame_attention=None, unet_use_temporal_attention=None,
)


class UNet3DConditionModel(nn.Module):
    """PersonaLive's denoising UNet. `UNet3DConditionModel(config_dict)` takes the case.json / model.yaml
    `denoising_unet` dict (flat, or with `unet_additional_kwargs` nested)."""

    def __init__(self, config=None, **kwargs):
        super().__init__()
        cfg = dict(_UNET3D_DEFAULTS)
        given = dict(config or {}, **kwargs)
        given.update(given.pop("unet_additional_kwargs", None) or {})
        unknown = set(given) - set(cfg)
        if unknown:
            raise ValueError(f"UNet3DConditionModel: unknown config keys {sorted(unknown)}")
        cfg.update(given)
        self.config = cfg
        if cfg["only_cross_attention"] or cfg["dual_cross_attention"] or cfg["class_embed_type"] is not None \
                or cfg["num_class_embeds"] is not None:
            raise ValueError("UNet3DConditionModel: only_cross_attention / dual_cross_attention / class "
                             "embeddings are not supported")
        down_types, up_types = list(cfg["down_block_types"]), list(cfg["up_block_types"])
        ch = list(cfg["block_out_channels"])
        n = len(down_types)
        heads = cfg["attention_head_dim"]
        heads = [heads] * n if isinstance(heads, int) else list(heads)
        c0 = ch[0]
        temb_dim = c0 * 4

        self.conv_in = InflatedConv3d(cfg["in_channels"], c0, kernel_size=3, padding=(1, 1))
        self.time_proj = Timesteps(c0, cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.time_embedding = TimestepEmbedding(c0, temb_dim)
        self.down_blocks = nn.ModuleList([])
        self.up_blocks = nn.ModuleList([])
        self.mid_block = None

        base = _Settings(temb_channels=temb_dim, resnet_eps=cfg["norm_eps"], resnet_groups=cfg["norm_num_groups"],
                         resnet_act_fn=cfg["act_fn"], resnet_time_scale_shift=cfg["resnet_time_scale_shift"],
                         cross_attention_dim=cfg["cross_attention_dim"],
                         use_linear_projection=cfg["use_linear_projection"],
                         upcast_attention=cfg["upcast_attention"],
                         use_inflated_groupnorm=cfg["use_inflated_groupnorm"],
                         unet_use_temporal_attention=bool(cfg["unet_use_temporal_attention"]))
        mm_kw = cfg["motion_module_kwargs"] or {}
        tm_kw = cfg["temporal_module_kwargs"] or {}

        def settings(h, motion, temporal):
            s = _Settings(base)
            s["num_attention_heads"] = h
            s["motion"] = mm_kw if motion else None
            s["temporal"] = tm_kw if temporal else None
            return s

        out_c = c0
        for i, t in enumerate(down_types):
            res = 2 ** i
            in_c, out_c = out_c, ch[i]
            here = res in cfg["motion_module_resolutions"] and not cfg["motion_module_decoder_only"]
            s = settings(heads[i], cfg["use_motion_module"] and here, cfg["use_temporal_module"] and here)
            last = i == n - 1
            if t == "CrossAttnDownBlock3D":
                blk = CrossAttnDownBlock3D(in_c, out_c, cfg["layers_per_block"], not last, cfg["downsample_padding"], s)
            elif t == "DownBlock3D":
                blk = DownBlock3D(in_c, out_c, cfg["layers_per_block"], not last, cfg["downsample_padding"], s)
            else:
                raise ValueError(f"unsupported down block {t!r}")
            self.down_blocks.append(blk)

        if cfg["mid_block_type"] != "UNetMidBlock3DCrossAttn":
            raise ValueError(f"unsupported mid block {cfg['mid_block_type']!r}")
        self.mid_block = UNetMidBlock3DCrossAttn(
            ch[-1], cfg["mid_block_scale_factor"],
            settings(heads[-1], cfg["use_motion_module"] and cfg["motion_module_mid_block"],
                     cfg["use_temporal_module"] and cfg["motion_module_mid_block"]))

        rch, rheads = ch[::-1], heads[::-1]
        out_c = rch[0]
        for i, t in enumerate(up_types):
            res = 2 ** (3 - i)  # the reference assumes four levels
            prev, out_c = out_c, rch[i]
            in_c = rch[min(i + 1, n - 1)]
            here = res in cfg["motion_module_resolutions"]
            s = settings(rheads[i], cfg["use_motion_module"] and here, cfg["use_temporal_module"] and here)
            last = i == n - 1
            if t == "CrossAttnUpBlock3D":
                blk = CrossAttnUpBlock3D(in_c, prev, out_c, cfg["layers_per_block"] + 1, not last, s)
            elif t == "UpBlock3D":
                blk = UpBlock3D(in_c, prev, out_c, cfg["layers_per_block"] + 1, not last, s)
            else:
                raise ValueError(f"unsupported up block {t!r}")
            self.up_blocks.append(blk)

        norm_cls = InflatedGroupNorm if cfg["use_inflated_groupnorm"] else nn.GroupNorm
        self.conv_norm_out = norm_cls(num_channels=c0, num_groups=cfg["norm_num_groups"], eps=cfg["norm_eps"])
        self.conv_act = nn.SiLU()
        self.conv_out = InflatedConv3d(c0, cfg["out_channels"], kernel_size=3, padding=1)

    @property
    def dtype(self):
        return self.conv_in.weight.dtype

    def forward(self, sample, timestep, encoder_hidden_states, pose_cond_fea=None, return_dict=False):
        """sample (b, in, f, h, w); timestep: number, 0-dim, (1,), (b,) or per frame (b*f,);
        encoder_hidden_states = [clip (b, S, D), motion (b, f, n, d) or (b*f, n, d)] (or just clip);
        pose_cond_fea (b, C0, f, h, w) added after conv_in. Returns (b, out, f, h, w) as a 1-tuple
        (return_dict is ignored; the reference's `.sample` is element 0)."""
        if isinstance(encoder_hidden_states, (list, tuple)):
            clip = encoder_hidden_states[0]
            motion = encoder_hidden_states[1] if len(encoder_hidden_states) > 1 else None
        else:
            clip, motion = encoder_hidden_states, None
        num_up = sum(1 for u in self.up_blocks if len(u.upsamplers))
        factor = 2 ** num_up
        forward_upsample_size = any(s % factor != 0 for s in sample.shape[-2:])
        if self.config["center_input_sample"]:
            sample = 2 * sample - 1.0

        b = sample.shape[0]
        t = timestep
        if not torch.is_tensor(t):
            t = torch.tensor([t], dtype=torch.float32 if isinstance(t, float) else torch.int64,
                             device=sample.device)
        elif t.dim() == 0:
            t = t[None].to(sample.device)
        if t.shape[0] == 1 and b > 1:
            t = t.expand(b)
        t_emb = self.time_proj(t).to(dtype=self.dtype)
        emb = self.time_embedding(t_emb)

        sample = self.conv_in(sample)
        if pose_cond_fea is not None:
            sample = sample + pose_cond_fea

        res = (sample,)
        for blk in self.down_blocks:
            sample, r = blk(sample, emb, clip, motion)
            res += r
        sample = self.mid_block(sample, emb, clip, motion)
        for i, blk in enumerate(self.up_blocks):
            k = len(blk.resnets)
            r, res = res[-k:], res[:-k]
            upsample_size = res[-1].shape[2:] if (i < len(self.up_blocks) - 1 and forward_upsample_size) else None
            sample = blk(sample, r, emb, clip, motion, upsample_size)
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
        return (sample,)


# ------------------------------------------------------------------------------------------ pose_guider.py

class PoseGuider(nn.Module):
    def __init__(self, conditioning_embedding_channels=320, conditioning_channels=3,
                 block_out_channels=(16, 32, 96, 256)):
        super().__init__()
        ch = list(block_out_channels)
        self.conv_in = InflatedConv3d(conditioning_channels, ch[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList([])
        for i in range(len(ch) - 1):
            self.blocks.append(InflatedConv3d(ch[i], ch[i], kernel_size=3, padding=1))
            self.blocks.append(InflatedConv3d(ch[i], ch[i + 1], kernel_size=3, padding=1, stride=2))
        self.conv_out_modify = InflatedConv3d(ch[-1], conditioning_embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out_modify.weight)
        nn.init.zeros_(self.conv_out_modify.bias)

    def forward(self, conditioning):
        """conditioning (b, c, f, h, w) -> (b, C, f, h/8, w/8)."""
        x = F.silu(self.conv_in(conditioning))
        for blk in self.blocks:
            x = F.silu(blk(x))
        return self.conv_out_modify(x)


# ------------------------------------------------------------------ reference UNet + mutual_self_attention.py

def build_reference_unet(config):
    """PersonaLive's reference UNet: diffusers UNet2DConditionModel(**config) without conv_norm_out /
    conv_out (forward returns the last up-block features)."""
    unet = UNet2DConditionModel(**dict(config))
    unet.conv_norm_out = None
    unet.conv_act = None
    unet.conv_out = nn.Identity()
    return unet


def _dfs(model):
    out = [model]
    for child in model.children():
        out += _dfs(child)
    return out


def _named_dfs(model, prefix=""):
    out = [(prefix, model)]
    for name, child in model.named_children():
        out += _named_dfs(child, f"{prefix}.{name}" if prefix else name)
    return out


class ReferenceAttentionControl:
    """Writer / reader pair. writer_unet: the reference UNet2DConditionModel (write mode: every
    BasicTransformerBlock records its norm1 output); reader_unet: the UNet3DConditionModel (read mode:
    self-attention keys/values extended by the bank). Blocks are paired as the reference does: both
    lists in DFS order restricted by fusion_blocks, stably sorted by -width, zipped."""

    def __init__(self, writer_unet, reader_unet, fusion_blocks="full", bank_dtype=torch.float16):
        if fusion_blocks not in ("full", "midup"):
            raise ValueError("fusion_blocks must be 'full' or 'midup'")
        self.writer_unet, self.reader_unet = writer_unet, reader_unet
        self.fusion_blocks = fusion_blocks
        self.bank_dtype = bank_dtype

        def select(unet, cls):
            if fusion_blocks == "midup":
                named = _named_dfs(unet.mid_block, "mid_block") + _named_dfs(unet.up_blocks, "up_blocks")
            else:
                named = _named_dfs(unet)
            mods = [(n, m) for n, m in named if isinstance(m, cls)]
            return sorted(mods, key=lambda nm: -nm[1].norm1.normalized_shape[0])

        self.writer_blocks = select(writer_unet, BasicTransformerBlock)
        self.reader_blocks = select(reader_unet, TemporalBasicTransformerBlock)
        if len(self.writer_blocks) != len(self.reader_blocks):
            raise ValueError("reference and denoising UNets have different numbers of transformer blocks")
        self.pairs = [(r[0], w[0]) for r, w in zip(self.reader_blocks, self.writer_blocks)]
        self.writer_banks = [[] for _ in self.writer_blocks]
        self.last_keep_idx = []
        self._hooks = []
        for j, (_, blk) in enumerate(self.writer_blocks):
            self._hooks.append(blk.norm1.register_forward_hook(self._recorder(j)))

    def _recorder(self, j):
        def hook(module, inputs, output):
            self.writer_banks[j].append(output.clone())
        return hook

    def detach(self):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.clear()

    def clear_writer(self):
        self.writer_banks = [[] for _ in self.writer_blocks]

    def clear_keyframes(self):
        for _, r in self.reader_blocks:
            r.kv_bank = None

    def clear(self):
        """writer.clear() + reader.clear() (banks and, with cache_kv, keyframes)."""
        self.clear_writer()
        for _, r in self.reader_blocks:
            r.bank = []
            r.kv_bank = None

    def write(self, ref_latent, clip, timestep=None):
        """One reference-UNet pass (write mode) at t = 0 (float zeros (1,) unless given)."""
        if timestep is None:
            timestep = torch.zeros((1,), dtype=torch.float32, device=ref_latent.device)
        return self.writer_unet(ref_latent, timestep, encoder_hidden_states=clip, return_dict=False)[0]

    def update(self, drop_ratio=0.0, draws=None, generator=None):
        """reader.update(writer, drop_ratio): reader bank j = writer recordings of block j (token-dropped:
        keep int(L*(1-drop_ratio)) tokens with the smallest uniform draws, in argsort order), stored in
        bank_dtype. draws: list of (b, L_j) uniforms in draw order (block j outer, recordings inner);
        None draws torch.rand from `generator` / the global generator."""
        self.last_keep_idx = []
        k = 0
        for j, (_, r) in enumerate(self.reader_blocks):
            bank = []
            for v in self.writer_banks[j]:
                if drop_ratio > 0:
                    n, l, c = v.shape
                    keep = int(l * (1 - drop_ratio))
                    if draws is not None:
                        rnd = draws[k]
                        k += 1
                    else:
                        rnd = torch.rand(n, l, generator=generator, device=v.device)
                    ids = torch.argsort(rnd, dim=1)[:, :keep].to(v.device)
                    self.last_keep_idx.append(ids)
                    v = torch.gather(v, 1, ids.unsqueeze(-1).expand(n, keep, c))
                bank.append(v.clone().to(self.bank_dtype))
            r.bank = bank

    def update_hkf(self):
        """reader.update_hkf(writer): append the writer's current recordings as keyframes (kv_bank)."""
        for j, (_, r) in enumerate(self.reader_blocks):
            new = torch.cat([v.unsqueeze(1).to(self.bank_dtype) for v in self.writer_banks[j]], dim=1)
            r.kv_bank = new if r.kv_bank is None else torch.cat([r.kv_bank, new], dim=1)

    @property
    def num_keyframes(self):
        kv = self.reader_blocks[0][1].kv_bank if self.reader_blocks else None
        return 0 if kv is None else kv.shape[1]


# ---------------------------------------------------------------------------------------- scheduler

class DDIMHelper:
    """alphas_cumprod / add_noise of DDIMScheduler(beta_start, beta_end, 'scaled_linear', 1000 steps),
    identical to diffusers (betas = linspace(sqrt b0, sqrt b1, N, fp32)**2, fp32 cumprod)."""

    def __init__(self, beta_start=0.00085, beta_end=0.02, num_train_timesteps=1000, beta_schedule="scaled_linear",
                 **_ignored):
        if beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float32) ** 2
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        else:
            raise ValueError(f"unsupported beta_schedule {beta_schedule!r}")
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

    def alpha_prod(self, timesteps, device=None):
        return self.alphas_cumprod.to(device or timesteps.device)[timesteps.long()]

    def _per_sample(self, a, x):
        """(b,) or (b*f,) per-frame values -> broadcastable over x (b, c, [f,] h, w)."""
        b = x.shape[0]
        if a.numel() == 1:
            return a.reshape([1] * x.dim())
        if a.shape[0] == b:
            return a.reshape([b] + [1] * (x.dim() - 1))
        f = x.shape[2]
        return a.reshape(b, f)[:, None, :, None, None]

    def add_noise(self, original, noise, timesteps):
        a = self.alpha_prod(timesteps, original.device).to(original.dtype)
        return self._per_sample(a ** 0.5, original) * original + self._per_sample((1 - a) ** 0.5, original) * noise


def get_x0_from_eps(alphas_cumprod, noisy, eps, timesteps):
    """train_stage1.py get_x0_from_eps: sqrt(1/a)*x - sqrt(1/a - 1)*eps (a per sample)."""
    a = alphas_cumprod.to(noisy.device)[timesteps.long()]
    a = a.reshape([a.shape[0]] + [1] * (noisy.dim() - 1))
    return torch.sqrt(1.0 / a) * noisy - torch.sqrt(1.0 / a - 1) * eps


def facial_mask(face_mask, local_mask, latent_hw, channels=4):
    """nearest(face) + nearest(local) at latent size -> (b, channels, 1, h, w), values {0, 1, 2}."""
    f = F.interpolate(face_mask, size=tuple(latent_hw), mode="nearest").unsqueeze(2).repeat(1, channels, 1, 1, 1)
    l = F.interpolate(local_mask, size=tuple(latent_hw), mode="nearest").unsqueeze(2).repeat(1, channels, 1, 1, 1)
    return f + l


def _snr_weighted_mse(a, b, alpha_prod, gamma):
    w = (alpha_prod / (1.0 - alpha_prod)).clamp(max=gamma)
    return ((a - b) ** 2 * w.reshape([a.shape[0]] + [1] * (a.dim() - 1)).to(a.dtype)).mean()


# ------------------------------------------------------------------------------------ training step

def stage1_step(denoiser, reference, control, scheduler_alphas, inputs, draws, noise_offset=0.05,
                bank_drop_ratio=0.3, snr_gamma=0.0, loss_weights=(1.0, 1.0)):
    """Latent-space part of one train_stage1.py iteration (no backward, no optimizer).

    denoiser: UNet3DConditionModel; reference: reference UNet2DConditionModel (build_reference_unet);
    control: ReferenceAttentionControl(reference, denoiser); scheduler_alphas: alphas_cumprod (1000,) fp32
    (DDIMHelper().alphas_cumprod).
    inputs: dict ref_latent (b,4,h,w), tgt_latent (b,4,1,h,w), clip_embeds (b,1,D), pose_fea (b,C0,1,h,w),
            motion (b,32,16) or (b,f,32,16), face_mask / local_mask (b,1,H,W) {0,1}.
    draws: dict noise (b,4,1,h,w), noise_offset_randn (b,4,1,1,1) or None, timesteps (b,) int64,
           bank_rand: list of (b, L_j) uniforms per paired block (None: drawn from torch.rand),
           uncond / drop_pose / drop_motion: bool.
    Returns dict noise, noisy, facial_mask, model_pred, x0, loss_mse, loss_local, loss."""
    latents = inputs["tgt_latent"]
    t = draws["timesteps"]
    noise = draws["noise"]
    if noise_offset and noise_offset > 0 and draws.get("noise_offset_randn") is not None:
        noise = noise + noise_offset * draws["noise_offset_randn"]
    ac = scheduler_alphas.to(latents.device)
    a = ac[t.long()]
    sa = (a ** 0.5).reshape([a.shape[0]] + [1] * (latents.dim() - 1))
    sb = ((1 - a) ** 0.5).reshape([a.shape[0]] + [1] * (latents.dim() - 1))
    noisy = sa * latents + sb * noise
    mask = facial_mask(inputs["face_mask"], inputs["local_mask"], latents.shape[-2:], latents.shape[1])

    # Net.forward
    control.clear()
    if not draws.get("uncond", False):
        t0 = torch.zeros_like(t)
        reference(inputs["ref_latent"], t0, encoder_hidden_states=inputs["clip_embeds"], return_dict=False)
        control.update(drop_ratio=bank_drop_ratio, draws=draws.get("bank_rand"))
    pose = torch.zeros_like(inputs["pose_fea"]) if draws.get("drop_pose", False) else inputs["pose_fea"]
    motion = torch.zeros_like(inputs["motion"]) if draws.get("drop_motion", False) else inputs["motion"]
    eps = denoiser(noisy, t, encoder_hidden_states=[inputs["clip_embeds"], motion], pose_cond_fea=pose)[0]
    control.clear()

    x0 = get_x0_from_eps(ac, noisy, eps, t)
    if snr_gamma and snr_gamma > 0:
        loss_mse = _snr_weighted_mse(x0, latents, a, snr_gamma)
        loss_local = _snr_weighted_mse(x0 * mask, latents * mask, a, snr_gamma)
    else:
        loss_mse = F.mse_loss(x0, latents)
        loss_local = F.mse_loss(x0 * mask, latents * mask)
    loss = loss_mse * loss_weights[0] + loss_local * loss_weights[1]
    return dict(noise=noise, noisy=noisy, facial_mask=mask, model_pred=eps, x0=x0, loss_mse=loss_mse,
                loss_local=loss_local, loss=loss)


# ------------------------------------------------------------------------------------------ streaming

def window_pass(denoiser, control, latents, timesteps, clip, motion, pose):
    """One denoiser call over a streaming window (wrapper.py process_input), reader banks in read mode
    (whatever `control` holds: reference bank from control.write + control.update(), keyframes from
    control.update_hkf()), under torch.inference_mode().
    latents (1,4,16,h,w); timesteps (16,) int64 per frame; clip (1,1,D); motion (1,16,32,16);
    pose (1,C0,16,h,w). Returns eps (1,4,16,h,w)."""
    with torch.inference_mode():
        return denoiser(latents, timesteps, encoder_hidden_states=[clip, motion], pose_cond_fea=pose)[0]


def ddim_step(alphas_cumprod, eps, timesteps, sample, step_length=333):
    """PersonaLive's per-frame DDIM step (eta 0): returns (x0, prev) for (b,c,f,h,w) sample and (f,) timesteps."""
    ac = alphas_cumprod.to(sample.device)
    t = timesteps.long().to(sample.device)
    prev_t = t - step_length
    a_t = ac[t]
    a_p = torch.where(prev_t >= 0, ac[prev_t.clamp(min=0)], torch.ones_like(a_t))
    a_t = a_t[None, None, :, None, None]
    a_p = a_p[None, None, :, None, None]
    beta_t = 1 - a_t
    x0 = (sample - beta_t ** 0.5 * eps) / a_t ** 0.5
    prev = a_p ** 0.5 * x0 + (1 - a_p) ** 0.5 * eps
    return x0, prev


def stream_loop(denoiser, reference, control, alphas_cumprod, inputs, noise_chunks, hkm_tau=17.0,
                hkm_warmup_chunks=8, max_keyframes=3, window_size=4, step_length=333):
    """wrapper.py fuse_reference + process_input with the front-ends bypassed (streaming/stream_loop_tiny).

    inputs: ref_latent (1,4,h,w), clip_embeds (1,1,D), ref_motion (1,32,16), pose_cond_fea (1,C0,T,h,w),
    motion_hidden_states (1,T,32,16), warmup_pose (1,C0,12,h,w), warmup_motion (1,12,32,16),
    init_noise (1,4,12,h,w). noise_chunks: list of K (1,4,4,h,w). Runs under torch.inference_mode().
    Returns dict of per-call lists (window_in, noise_pred, latents_chunk) and loop state."""
    tws = window_size
    ts = [step_length * i for i in range(4)]  # 0, 333, 666, 999 (oldest chunk cleanest)
    with torch.inference_mode():
        ref, clip = inputs["ref_latent"], inputs["clip_embeds"]
        dev = ref.device
        ac = alphas_cumprod.to(dev)
        t_win = torch.tensor(ts, dtype=torch.int64, device=dev).repeat_interleave(tws)
        # fuse_reference
        control.clear()
        control.write(ref, clip)
        control.update()
        t_q = t_win[: 3 * tws]
        a = ac[t_q][None, None, :, None, None]
        queue = a ** 0.5 * ref.unsqueeze(2) + (1 - a) ** 0.5 * inputs["init_noise"]
        out = dict(init_queue=queue.clone(), window_in=[], noise_pred=[], latents_chunk=[], keyframe_chunks=[],
                   keyframe_latents=[], hkm_check_calls=[], hkm_min_dist=[], hkm_bank_size_before=[],
                   window_timesteps=t_win)
        motion_bank = inputs["ref_motion"].unsqueeze(1)
        num_kf = 0
        s_pose = torch.cat([inputs["warmup_pose"], inputs["pose_cond_fea"]], dim=2)
        s_mot = torch.cat([inputs["warmup_motion"], inputs["motion_hidden_states"]], dim=1)
        a999 = ac[t_win[-1]]
        for k, noise in enumerate(noise_chunks):
            pose = s_pose[:, :, tws * k: tws * k + 4 * tws]
            mot = s_mot[:, tws * k: tws * k + 4 * tws]
            new = a999 ** 0.5 * ref.unsqueeze(2) + (1 - a999) ** 0.5 * noise
            x = torch.cat([queue, new], dim=2)
            out["window_in"].append(x)
            add = False
            if k > hkm_warmup_chunks:
                v = mot[:, 0].reshape(1, 1, -1)
                d = torch.cdist(v, motion_bank.reshape(1, motion_bank.shape[1], -1)).min()
                out["hkm_check_calls"].append(k)
                out["hkm_min_dist"].append(d.item())
                out["hkm_bank_size_before"].append(motion_bank.shape[1])
                if d.item() > hkm_tau:
                    motion_bank = torch.cat([motion_bank, mot[:, :1]], dim=1)
                    add = True
            eps = window_pass(denoiser, control, x, t_win, clip, mot, pose)
            out["noise_pred"].append(eps)
            x0, prev = ddim_step(ac, eps, t_win, x, step_length)
            x = torch.cat([x0[:, :, :tws], prev[:, :, tws:]], dim=2)
            if add and num_kf < max_keyframes:
                control.clear_writer()
                kf = x0[:, :, 0]
                control.write(kf, clip)
                control.update_hkf()
                num_kf += 1
                out["keyframe_chunks"].append(k)
                out["keyframe_latents"].append(kf)
            out["latents_chunk"].append(x[:, :, :tws])
            queue = x[:, :, tws:]
        out["final_queue"] = queue
        out["motion_bank_final"] = motion_bank
        return out
