"""Seeded synthetic call records that look like a Vietnamese auto-call campaign's history.

Record ``i`` of a seed is computed from ``(seed, i)`` alone, in a few microseconds and without
any shared state: the same arguments give the same record on every run and platform, a
million-record history needs no memory until a record is asked for, and record ``i`` does not
depend on how many records there are.

What the data looks like:

- four campaigns (debt reminder, satisfaction survey, order confirmation, new plan offer),
  each with its own group, script template, bot, greeting and collected fields;
- outcomes in a realistic mix, about 62 % ``ANSWERED`` (SIP 200), 20 % ``NO ANSWER``
  (480 or 487, after 25-60 s of ringing), 11 % ``BUSY`` (486, rarely 600) and 7 % ``FAILED``
  (503, 404, 500 or 484, within seconds);
- unanswered calls bill nothing, have ``answer_at`` null, no collected data, no input log and
  an empty conversation; answered calls bill in 6-second blocks (88 VND each), pay a service
  charge and a per-minute bot fee, and collect the campaign's fields (fewer when the customer
  hangs up early), which the input log and the conversation repeat;
- Vietnamese names (family names weighted as in the population, given names matching the
  middle name's gender), mobile numbers with real Vietnamese prefixes, customer ids, members
  and hotlines.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import attrs
import orjson

__all__ = ["DEFAULT_START", "RecordGenerator", "generate_records", "make_conversation"]

#: The creation time of record 0: 2025-12-01 00:00:00 UTC (Unix seconds).
DEFAULT_START: Final = 1_764_547_200

_MASK64: Final = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of an int, the same everywhere."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _weighted(table: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Expand ``(value, weight)`` pairs into a lookup table indexed by a random number."""
    return tuple(value for value, weight in table for _ in range(weight))


# Family names weighted by their share of the population (percent, rounded).
_FAMILY: Final = _weighted(
    [
        ("Nguyễn", 38),
        ("Trần", 11),
        ("Lê", 10),
        ("Phạm", 7),
        ("Hoàng", 5),
        ("Huỳnh", 5),
        ("Phan", 5),
        ("Vũ", 4),
        ("Võ", 4),
        ("Đặng", 2),
        ("Bùi", 2),
        ("Đỗ", 2),
        ("Hồ", 2),
        ("Ngô", 1),
        ("Dương", 1),
        ("Lý", 1),
    ]
)
_MALE: Final = (
    ("Văn", "Hữu", "Đức", "Quang", "Minh"),
    ("An", "Bình", "Dũng", "Hải", "Hùng", "Khoa", "Long", "Nam", "Phong", "Quân", "Sơn", "Tuấn"),
)
_FEMALE: Final = (
    ("Thị", "Ngọc", "Thu", "Kim", "Thanh"),
    ("Chi", "Giang", "Hà", "Hạnh", "Lan", "Linh", "Mai", "Nga", "Phương", "Thảo", "Trang", "Vy"),
)
# Mobile prefixes of Viettel, Vinaphone, MobiFone and Vietnamobile.
_PREFIXES: Final = (
    "032",
    "033",
    "034",
    "035",
    "036",
    "037",
    "038",
    "039",
    "070",
    "076",
    "077",
    "078",
    "079",
    "081",
    "082",
    "083",
    "084",
    "085",
    "086",
    "088",
    "089",
    "090",
    "091",
    "093",
    "094",
    "096",
    "097",
    "098",
)
_MEMBERS: Final = (
    ("Trần Thu Hà", "#e67e22"),
    ("Lê Minh Quân", "#2980b9"),
    ("Phạm Ngọc Lan", "#27ae60"),
    ("Đỗ Quang Huy", "#8e44ad"),
)
_HOTLINES: Final = (
    ("HL_HN_01", "Hotline Hà Nội", "02473001234"),
    ("HL_HCM_01", "Hotline TP.HCM", "02871005678"),
    ("HL_DN_01", "Hotline Đà Nẵng", "02363009999"),
)


@attrs.frozen
class _Question:
    """A field a campaign's bot collects: its key, label, prompt, and (value, reply) answers."""

    cfkey: str
    cfname: str
    description: str
    prompt: str
    answers: tuple[tuple[str, str], ...]


@attrs.frozen
class _Campaign:
    code: str
    name: str
    group_code: str
    group_name: str
    script_code: str
    script_name: str
    bot_id: str
    greeting: str
    questions: tuple[_Question, ...]


_CAMPAIGNS: Final = (
    _Campaign(
        "CMP_NHACNO_T11",
        "Nhắc nợ tháng 11",
        "GRP_THUHOI",
        "Thu hồi nợ",
        "TPL_NHACNO_01",
        "Kịch bản nhắc nợ",
        "BOT_NHACNO",
        "Xin chào, em gọi từ Tài chính Ánh Dương về khoản vay đến hạn của anh/chị.",
        (
            _Question(
                "hen_thanh_toan",
                "Hẹn thanh toán",
                "Khách có hẹn ngày thanh toán không",
                "Anh/chị có thể thanh toán trong tuần này không ạ?",
                (
                    ("Có", "Được, thứ sáu tôi chuyển khoản"),
                    ("Có", "Mai tôi ra ngân hàng đóng"),
                    ("Không", "Tháng này tôi chưa xoay được"),
                ),
            ),
            _Question(
                "so_tien_hen",
                "Số tiền hẹn",
                "Số tiền khách hẹn trả (VND)",
                "Anh/chị dự kiến thanh toán bao nhiêu ạ?",
                (
                    ("2.350.000", "Hai triệu ba trăm rưỡi"),
                    ("1.000.000", "Trước mắt một triệu"),
                    ("5.000.000", "Tôi trả hết năm triệu"),
                ),
            ),
        ),
    ),
    _Campaign(
        "CMP_KHAOSAT_CSKH",
        "Khảo sát chăm sóc khách hàng",
        "GRP_CSKH",
        "Chăm sóc khách hàng",
        "TPL_KHAOSAT_02",
        "Kịch bản khảo sát",
        "BOT_KHAOSAT",
        "Xin chào, em gọi từ tổng đài chăm sóc khách hàng, xin phép hỏi anh/chị vài câu ạ.",
        (
            _Question(
                "diem_hai_long",
                "Điểm hài lòng",
                "Thang điểm 1-5",
                "Anh/chị chấm dịch vụ bao nhiêu điểm trên thang năm ạ?",
                (("5", "Năm điểm"), ("4", "Bốn điểm"), ("3", "Ba điểm thôi"), ("1", "Một điểm")),
            ),
            _Question(
                "gop_y",
                "Góp ý",
                "Góp ý của khách",
                "Anh/chị có góp ý gì thêm không ạ?",
                (
                    ("Không", "Không có gì"),
                    ("Giao hàng chậm", "Giao hàng hơi chậm"),
                    ("Tổng đài khó gọi", "Gọi tổng đài khó quá"),
                ),
            ),
        ),
    ),
    _Campaign(
        "CMP_XACNHAN_DON",
        "Xác nhận đơn hàng",
        "GRP_BANHANG",
        "Bán hàng",
        "TPL_XACNHAN_03",
        "Kịch bản xác nhận đơn",
        "BOT_XACNHAN",
        "Xin chào, em gọi để xác nhận đơn hàng anh/chị vừa đặt ạ.",
        (
            _Question(
                "xac_nhan_don",
                "Xác nhận đơn",
                "Khách đồng ý hay huỷ đơn",
                "Anh/chị xác nhận giữ đơn hàng này chứ ạ?",
                (("Đồng ý", "Ừ, đúng rồi em"), ("Đồng ý", "Dạ vâng"), ("Huỷ", "Thôi huỷ giúp chị")),
            ),
            _Question(
                "khung_gio_giao",
                "Khung giờ giao",
                "Khung giờ khách muốn nhận hàng",
                "Anh/chị muốn nhận hàng vào buổi nào ạ?",
                (("Sáng", "Buổi sáng nhé"), ("Chiều", "Chiều sau năm giờ"), ("Tối", "Tối nhé")),
            ),
        ),
    ),
    _Campaign(
        "CMP_GIOITHIEU_GOI",
        "Giới thiệu gói cước mới",
        "GRP_BANHANG",
        "Bán hàng",
        "TPL_GIOITHIEU_04",
        "Kịch bản giới thiệu gói cước",
        "BOT_GOICUOC",
        "Xin chào, nhà mạng đang có gói cước ưu đãi dành riêng cho anh/chị ạ.",
        (
            _Question(
                "quan_tam",
                "Quan tâm",
                "Khách có quan tâm gói cước không",
                "Anh/chị có muốn nghe thêm về gói cước này không ạ?",
                (("Có", "Ừ, nói thử xem"), ("Không", "Không, cảm ơn"), ("Có", "Bao nhiêu tiền?")),
            ),
            _Question(
                "goi_dang_ky",
                "Gói đăng ký",
                "Gói cước khách chọn",
                "Anh/chị muốn đăng ký gói nào ạ?",
                (("MAX70", "Gói bảy mươi"), ("MAX120", "Gói một trăm hai"), ("", "Để tôi nghĩ")),
            ),
        ),
    ),
)
_PROMPTS: Final = {q.cfkey: q.prompt for c in _CAMPAIGNS for q in c.questions}
_GOODBYE: Final = "Cảm ơn anh/chị đã dành thời gian. Chào anh/chị ạ."
_REPLY_SEPARATOR: Final = " | "

# (disposition, status, weight, ((SIP code, weight), ...)): most calls are answered.
_OUTCOMES: Final = (
    ("ANSWERED", 1, 62, (("200", 1),)),
    ("NO ANSWER", 2, 20, (("480", 3), ("487", 1))),
    ("BUSY", 3, 11, (("486", 9), ("600", 1))),
    ("FAILED", 4, 7, (("503", 4), ("404", 3), ("500", 2), ("484", 1))),
)

#: How many distinct call shapes a seed draws; records pick one each by their index's hash.
_POOL_SIZE: Final = 2048
# VND: per 6-second block of talk, per answered call, per started minute of bot time.
_BLOCK_PRICE: Final = 88.0
_SERVICE_CHARGE: Final = 200.0
_BOT_MINUTE_PRICE: Final = 300.0


def _call_shape(rng: random.Random, vbot_id: str) -> tuple[dict[str, Any], int]:
    """One call's campaign, outcome, durations, charges and answers; and its ring seconds.

    The per-call identity (phone, name, ids, times) is left for `RecordGenerator.record`.
    """
    campaign = rng.choice(_CAMPAIGNS)
    disposition, status, _, sip_codes = rng.choices(_OUTCOMES, [o[2] for o in _OUTCOMES])[0]
    sip_code = rng.choices([c for c, _ in sip_codes], [w for _, w in sip_codes])[0]
    member_no = rng.randrange(len(_MEMBERS))
    member_name, color = _MEMBERS[member_no]
    hl_code, hl_name, hl_phone = rng.choice(_HOTLINES)
    answered = disposition == "ANSWERED"
    collected: list[dict[str, str]] = []
    replies: list[str] = []
    if answered:
        ring = rng.randint(3, 25)
        # Some customers hang up after the greeting or the first question.
        asked = rng.choices([0, 1, 2], [1, 2, 7])[0]
        for question in campaign.questions[:asked]:
            value, reply = rng.choice(question.answers)
            collected.append(
                {
                    "cfkey": question.cfkey,
                    "cfname": question.cfname,
                    "cfvalue": value,
                    "description": question.description,
                }
            )
            replies.append(reply)
        billsec = rng.randint(8, 15) + sum(rng.randint(10, 40) for _ in range(asked))
    elif disposition == "NO ANSWER":
        ring, billsec = rng.randint(25, 60), 0
    else:
        ring, billsec = rng.randint(0, 6), 0
    shape = {
        "phone": None,
        "name": None,
        "customer_uid": None,
        "duration": ring + billsec,
        "billsec": billsec,
        "sip_code": sip_code,
        "disposition": disposition,
        "input_log": _REPLY_SEPARATOR.join(replies),
        "status": status,
        "postage": math.ceil(billsec / 6) * _BLOCK_PRICE,
        "service_charge": _SERVICE_CHARGE if answered else 0.0,
        "postage_bot_service": math.ceil(billsec / 60) * _BOT_MINUTE_PRICE,
        "member": {
            "name": member_name,
            "color": color,
            "vbot_id": f"{vbot_id}-NV{member_no + 1:02d}",
        },
        "hotline": {"code": hl_code, "name": hl_name, "phone_number": hl_phone},
        "call_collected_data": collected,
        "answer_at": None,
        "end_call_at": None,
        "campaign_name": campaign.name,
        "campaign_code": campaign.code,
        "campaign_group_name": campaign.group_name,
        "campaign_group_code": campaign.group_code,
        "template_script_name": campaign.script_name,
        "template_script_code": campaign.script_code,
        "voice_text": campaign.greeting,
        "create_at": None,
        "bot_id": campaign.bot_id,
        "trans_id": None,
        "create_by": "auto-call",
        "score": round(rng.uniform(4, 10), 1) if answered else 0.0,
        "is_record": answered,
    }
    return shape, ring


@functools.lru_cache(maxsize=8)
def _call_shapes(seed: int, vbot_id: str) -> tuple[tuple[dict[str, Any], int], ...]:
    """The call shapes of a seed, shared by its generators (they are a few megabytes)."""
    rng = random.Random(seed)
    return tuple(_call_shape(rng, vbot_id) for _ in range(_POOL_SIZE))


@attrs.frozen(kw_only=True)
class RecordGenerator:
    """Computes call record ``i`` of a seeded synthetic history, in the API's shape.

    Record ``i`` is created at ``start + i * spacing`` seconds (in ``time_unit``) and has the
    ``trans_id`` ``f"{id_prefix}{seed}-{i:08d}"``, so histories with other prefixes never
    collide. Every call returns a new dict, which the caller may change.

    Args:
        seed: Same seed, same records.
        start: The creation time of record 0, in Unix seconds.
        spacing: Seconds between consecutive records (>= 1, so creation times are distinct).
        vbot_id: The customer's VBot id, from which the members' ids are made.
        id_prefix: The start of every ``trans_id``.
        time_unit: ``"s"`` or ``"ms"``: the unit of ``create_at``, ``answer_at`` and
            ``end_call_at`` (millisecond times also carry a sub-second part).
    """

    seed: int = 0
    start: int = DEFAULT_START
    spacing: int = attrs.field(default=37)
    vbot_id: str = "VB0001"
    id_prefix: str = "TX"
    time_unit: Literal["s", "ms"] = "s"
    _key: int = attrs.field(init=False)
    _pool: tuple[tuple[dict[str, Any], int], ...] = attrs.field(init=False, repr=False)

    @spacing.validator
    def _check_spacing(self, _: object, value: int) -> None:
        if value < 1:
            raise ValueError(f"spacing must be >= 1 second, got {value!r}")

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_key", _mix(self.seed & _MASK64))
        object.__setattr__(self, "_pool", _call_shapes(self.seed, self.vbot_id))

    @property
    def _scale(self) -> int:
        return 1000 if self.time_unit == "ms" else 1

    def created(self, index: int) -> int:
        """The ``create_at`` of record ``index``."""
        seconds = self.start + index * self.spacing
        if self.time_unit == "ms":
            return seconds * 1000 + _mix(self._key ^ index) % 1000
        return seconds

    def trans_id(self, index: int) -> str:
        """The ``trans_id`` of record ``index``."""
        return f"{self.id_prefix}{self.seed}-{index:08d}"

    def index_of(self, trans_id: str) -> int | None:
        """The index whose record has ``trans_id``, or ``None`` if no index has it."""
        head = f"{self.id_prefix}{self.seed}-"
        digits = trans_id[len(head) :]
        if not trans_id.startswith(head) or len(digits) < 8 or not digits.isdigit():
            return None
        index = int(digits)
        return index if self.trans_id(index) == trans_id else None

    def record(self, index: int, *, created: int | None = None) -> dict[str, Any]:
        """Record ``index``; ``created`` overrides its ``create_at`` (in ``time_unit``)."""
        h = _mix(self._key ^ index)
        shape, ring = self._pool[h % _POOL_SIZE]
        created = self.created(index) if created is None else created
        scale = self._scale
        record = dict(shape)
        h2 = _mix(h)
        if (h2 >> 40) & 1:
            middles, givens = _MALE
        else:
            middles, givens = _FEMALE
        record["phone"] = _PREFIXES[h2 % len(_PREFIXES)] + f"{(h2 >> 8) % 10**7:07d}"
        record["name"] = (
            f"{_FAMILY[(h >> 16) % len(_FAMILY)]} {middles[(h >> 24) % len(middles)]} "
            f"{givens[(h >> 32) % len(givens)]}"
        )
        record["customer_uid"] = f"KH{(h2 >> 41) % 10**6:06d}"
        record["member"] = dict(shape["member"])
        record["hotline"] = dict(shape["hotline"])
        record["call_collected_data"] = [dict(item) for item in shape["call_collected_data"]]
        if shape["disposition"] == "ANSWERED":
            record["answer_at"] = created + ring * scale
        record["end_call_at"] = created + shape["duration"] * scale
        record["create_at"] = created
        record["trans_id"] = self.trans_id(index)
        return record


def generate_records(
    count: int,
    *,
    seed: int = 0,
    start: int = DEFAULT_START,
    spacing: int = 37,
    vbot_id: str = "VB0001",
    id_prefix: str = "TX",
    time_unit: Literal["s", "ms"] = "s",
) -> list[dict[str, Any]]:
    """``count`` call records in the API's shape, the same for the same arguments.

    Record ``i`` is `RecordGenerator` record ``i`` (see there for times and ids), so the first
    ``n`` records of a seed are the same whatever ``count`` is.
    """
    generator = RecordGenerator(
        seed=seed,
        start=start,
        spacing=spacing,
        vbot_id=vbot_id,
        id_prefix=id_prefix,
        time_unit=time_unit,
    )
    return [generator.record(i) for i in range(count)]


def make_conversation(record: Mapping[str, Any]) -> str:
    """The bot conversation of ``record``, as the JSON string ``getBotConversation`` returns.

    A JSON array of ``{"speaker": "bot" | "customer", "text": ...}`` turns: the greeting, then
    for each collected field the bot's question and the customer's reply (taken from the input
    log, else the collected value), then a goodbye. A call that was not answered has no
    conversation: ``"[]"``.
    """
    if str(record.get("disposition")).casefold() not in ("answered", "answer"):
        return "[]"  # not answered, in the seed's spelling or a dialect's
    turns = [{"speaker": "bot", "text": record.get("voice_text") or "Xin chào"}]
    replies = str(record.get("input_log") or "").split(_REPLY_SEPARATOR)
    for number, item in enumerate(record.get("call_collected_data") or ()):
        cfkey, cfname = item.get("cfkey"), item.get("cfname")
        turns.append({"speaker": "bot", "text": _PROMPTS.get(cfkey) or f"{cfname}?"})
        reply = replies[number] if number < len(replies) else ""
        turns.append({"speaker": "customer", "text": reply or str(item.get("cfvalue") or "")})
    turns.append({"speaker": "bot", "text": _GOODBYE})
    return orjson.dumps(turns).decode()
