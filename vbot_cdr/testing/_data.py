"""Seeded synthetic call records that look like a Vietnamese auto-call campaign's history."""

from __future__ import annotations

import random
from typing import Any

import orjson

__all__ = ["generate_records", "make_conversation"]

_FAMILY = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
]
_MIDDLE = ["Văn", "Thị", "Hữu", "Minh", "Thanh", "Ngọc", "Đức", "Thu", "Quang", "Kim"]
_GIVEN = [
    "An",
    "Bình",
    "Chi",
    "Dũng",
    "Giang",
    "Hà",
    "Hải",
    "Hạnh",
    "Hùng",
    "Lan",
    "Linh",
    "Long",
    "Mai",
    "Nam",
    "Nga",
    "Phong",
    "Phương",
    "Quân",
    "Sơn",
    "Tâm",
    "Thảo",
    "Trang",
    "Tuấn",
    "Vy",
    "Yến",
]
_PREFIXES = [
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
]
_CAMPAIGNS = [
    ("CMP_NHACNO_T11", "Nhắc nợ tháng 11", "GRP_THUHOI", "Thu hồi nợ"),
    ("CMP_KHAOSAT_CSKH", "Khảo sát chăm sóc khách hàng", "GRP_CSKH", "Chăm sóc khách hàng"),
    ("CMP_XACNHAN_DON", "Xác nhận đơn hàng", "GRP_BANHANG", "Bán hàng"),
    ("CMP_GIOITHIEU_GOI", "Giới thiệu gói cước mới", "GRP_BANHANG", "Bán hàng"),
]
_SCRIPTS = [
    ("TPL_NHACNO_01", "Kịch bản nhắc nợ"),
    ("TPL_KHAOSAT_02", "Kịch bản khảo sát"),
    ("TPL_XACNHAN_03", "Kịch bản xác nhận đơn"),
]
_MEMBERS = [("Trần Thu Hà", "#e67e22"), ("Lê Minh Quân", "#2980b9"), ("Phạm Ngọc Lan", "#27ae60")]
_HOTLINES = [
    ("HL_HN_01", "Hotline Hà Nội", "02473001234"),
    ("HL_HCM_01", "Hotline TP.HCM", "02871005678"),
    ("HL_DN_01", "Hotline Đà Nẵng", "02363009999"),
]
_BOTS = ["BOT_NHACNO", "BOT_KHAOSAT", "BOT_XACNHAN"]
# (disposition, SIP code, status, weight): most calls are answered, about a third are not.
_OUTCOMES = [
    ("ANSWERED", "200", 1, 62),
    ("NO ANSWER", "480", 2, 20),
    ("BUSY", "486", 3, 11),
    ("FAILED", "503", 4, 7),
]
_REPLIES = [
    "Dạ vâng",
    "Tôi sẽ thanh toán vào thứ sáu",
    "Không, cảm ơn",
    "Gọi lại sau nhé",
    "Đúng rồi",
    "Tôi đã nhận được hàng",
    "Bao nhiêu tiền vậy em?",
]


def generate_records(
    count: int,
    *,
    seed: int = 0,
    start: int = 1_764_547_200,
    spacing: int = 37,
    vbot_id: str = "VB0001",
    id_prefix: str = "TX",
) -> list[dict[str, Any]]:
    """``count`` call records in the API's shape, the same for the same arguments.

    Call ``i`` is created at ``start + i * spacing`` (Unix seconds) and has the ``trans_id``
    ``f"{id_prefix}{seed}-{i:08d}"``, so records made with another prefix never collide.
    """
    rng = random.Random(seed)
    weights = [w for *_, w in _OUTCOMES]
    records = []
    for i in range(count):
        campaign, campaign_name, group, group_name = rng.choice(_CAMPAIGNS)
        script, script_name = rng.choice(_SCRIPTS)
        disposition, sip_code, status, _ = rng.choices(_OUTCOMES, weights)[0]
        answered = disposition == "ANSWERED"
        created = start + i * spacing
        ring = rng.randint(3, 25)
        billsec = rng.randint(8, 240) if answered else 0
        member_name, color = rng.choice(_MEMBERS)
        hl_code, hl_name, hl_phone = rng.choice(_HOTLINES)
        collected = (
            [
                {
                    "cfkey": "hen_thanh_toan",
                    "cfname": "Hẹn thanh toán",
                    "cfvalue": rng.choice(["Có", "Không"]),
                    "description": "Khách hẹn ngày thanh toán",
                },
                {
                    "cfkey": "diem_hai_long",
                    "cfname": "Điểm hài lòng",
                    "cfvalue": str(rng.randint(1, 5)),
                    "description": "Thang điểm 1-5",
                },
            ]
            if answered
            else []
        )
        records.append(
            {
                "phone": rng.choice(_PREFIXES) + f"{rng.randrange(10**7):07d}",
                "name": f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}",
                "customer_uid": f"KH{rng.randrange(10**6):06d}",
                "duration": ring + billsec,
                "billsec": billsec,
                "sip_code": sip_code,
                "disposition": disposition,
                "input_log": rng.choice(_REPLIES) if answered else "",
                "status": status,
                "postage": round(billsec / 60 * 880.0, 1),
                "service_charge": 150.0 if answered else 0.0,
                "postage_bot_service": round(billsec / 60 * 300.0, 1),
                "member": {"name": member_name, "color": color, "vbot_id": vbot_id},
                "hotline": {"code": hl_code, "name": hl_name, "phone_number": hl_phone},
                "call_collected_data": collected,
                "answer_at": created + ring if answered else 0,
                "end_call_at": created + ring + billsec,
                "campaign_name": campaign_name,
                "campaign_code": campaign,
                "campaign_group_name": group_name,
                "campaign_group_code": group,
                "template_script_name": script_name,
                "template_script_code": script,
                "voice_text": "Xin chào, đây là cuộc gọi tự động từ trung tâm chăm sóc khách hàng.",
                "create_at": created,
                "bot_id": _BOTS[_CAMPAIGNS.index((campaign, campaign_name, group, group_name)) % 3],
                "trans_id": f"{id_prefix}{seed}-{i:08d}",
                "create_by": "auto-call",
                "score": round(rng.uniform(0, 10), 1) if answered else 0.0,
                "is_record": answered,
            }
        )
    return records


def make_conversation(record: dict[str, Any]) -> str:
    """A plausible bot conversation for ``record``, as the JSON string the API returns."""
    rng = random.Random(record.get("trans_id"))
    turns = [{"speaker": "bot", "text": record.get("voice_text") or "Xin chào"}]
    if record.get("disposition") == "ANSWERED":
        for _ in range(rng.randint(1, 3)):
            turns.append({"speaker": "customer", "text": rng.choice(_REPLIES)})
            turns.append({"speaker": "bot", "text": "Dạ, em cảm ơn anh/chị."})
    return orjson.dumps(turns).decode()
