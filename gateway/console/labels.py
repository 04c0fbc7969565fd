"""The Chinese words the console shows for the store's codes (grades, kinds, flags,
statuses, audit actions, domain error codes). Codes stay English in the store, logs and API."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.errors import BadInput, Conflict, DomainError, NotFound, Unavailable
from protocol.grades import NAMES_ZH

GRADE: dict[str, str] = dict(NAMES_ZH)

KIND: dict[str, str] = {
    "rated": "评价",
    "walkup": "无邀请按键",
    "extra": "重复按键",
    "unrated": "未评价",
    "unpaired": "未配对按键",
}

FLAG: dict[str, str] = {
    "extra": "重复按键",
    "late": "超时按键",
    "no_invitation": "无办件邀请",
    "foreign_invitation": "他机邀请",
    "unbound": "未绑定窗口",
    "after_hours": "非办公时间",
    "burst": "连续按键",
    "unpaired": "未配对",
    "attribution_error": "归属出错",
    "bad_time": "设备时间异常",
}

INV_STATUS: dict[str, str] = {
    "pending": "等待评价",
    "rated": "已评价",
    "unrated": "未评价",
    "cancelled": "已撤销",
    "expired": "已超时",
    "superseded": "已被新办件替代",
}

UPLINK_STATUS: dict[str, str] = {
    "pending": "待上报",
    "sent": "已发送待确认",
    "acked": "平台已确认",
    "rejected": "平台拒收",
    "covered": "已由默认评价代替",
}

ACTIONS: dict[str, str] = {
    "device.add": "登记设备",
    "device.rekey": "设备换密钥",
    "window.add": "新增窗口",
    "staff.add": "新增工作人员",
    "binding.open": "绑定（一码一账号）",
    "binding.close": "解除绑定",
    "invitation.create": "发出评价邀请",
    "invitation.cancel": "撤销评价邀请",
    "invitation.supersede": "邀请被替代",
    "invitation.expire": "邀请超时",
    "uplink.requeue": "重新排队上报",
    "account.add": "新增控制台账号",
    "account.passwd": "修改密码",
    "account.disable": "停用账号",
    "account.enable": "启用账号",
    "account.profile": "修改账号角色或范围",
    "console.login": "登录",
    "console.logout": "退出登录",
    "console.login_failed": "登录失败",
    "console.lockout": "账号锁定",
    "complaint.open": "生成差评工单",
    "complaint.contact": "差评：联系群众",
    "complaint.verify": "差评：核实",
    "complaint.rectify": "差评：整改反馈",
    "complaint.callback": "差评：回访",
    "complaint.close": "差评：办结",
    "complaint.appeal": "差评：申诉",
    "complaint.review_start": "差评：开始复核",
    "complaint.review": "差评：复核决定",
    "complaint.exclude": "差评：剔除评价",
    "complaint.reasons": "差评：原因",
    "complaint.correction_done": "差评：已在平台更正",
    "hall.add": "新增大厅",
    "hall.update": "修改大厅",
    "hall.retire": "撤销大厅",
    "department.add": "新增部门",
    "department.update": "修改部门",
    "department.retire": "撤销部门",
    "window.rename": "窗口改名",
    "window.move": "调整窗口",
    "window.retire": "撤销窗口",
    "staff.update": "修改工作人员",
    "staff.retire": "工作人员停用",
    "device.move": "设备调整大厅",
}

# Domain error codes -> what a hall admin reads; anything else shows the service's own line.
ERRORS: dict[str, str] = {
    "already_bound": "该设备、窗口或工作人员已有绑定",
    "window_exists": "窗口编号已存在",
    "staff_exists": "工作人员账号已存在",
    "unknown_device": "没有这台设备",
    "unknown_window": "没有这个窗口",
    "unknown_staff": "没有这个工作人员账号",
    "not_bound": "该设备当前没有绑定",
    "account_exists": "账号已存在",
    "unknown_account": "没有这个账号",
    "weak_password": "密码太简单：至少 10 个字符，且不能与账号相同",
    "bad_password": "密码格式不正确",
    "csrf": "页面已过期或请求来源不明（防伪校验失败），请刷新页面后重试",
    "bad_transition": "工单当前状态不允许此操作",
    "appeal_too_late": "已超过申诉期限",
    "missing_note": "请填写说明（做了什么，或为什么）",
    "bad_note": "说明过长或含有控制字符（最多 1000 字）",
    "bad_text": "文字过长或含有控制字符（最多 500 字）",
    "bad_reason": "请选择正确的原因",
    "bad_grade": "请选择评价等级",
    "unknown_tag": "差评标签不在当前标签集中",
    "no_tag_set": "尚未配置差评标签集",
    "already_excluded": "该评价已被剔除",
    "changed_meanwhile": "工单刚被他人修改，请刷新后重试",
    "unknown_complaint": "没有这个差评工单",
    "calendar_unknown_year": "工作日历缺少该年份，无法计算期限",
    "no_first_rating": "该办件还没有首次评价，不能追加评价",
    "case_already_followed_up": "该办件已有追加评价",
    "follow_up_too_late": "已超过追加评价期限",
    "no_device_bound": "该窗口当前没有绑定评价器",
    "bad_transition_correction": "该更正不需要人工处理",
    "hall_exists": "大厅编号已存在",
    "department_exists": "部门已存在",
    "bad_dept_code": "统一社会信用代码不正确",
    "unknown_hall": "没有这个大厅",
    "unknown_department": "没有这个部门",
    "already_retired": "已经撤销",
    "hall_in_use": "大厅仍有部门、窗口或设备，请先调整或撤销",
    "department_in_use": "部门仍有窗口，请先调整或撤销",
    "window_in_use": "窗口仍绑定着评价器，请先解除绑定",
    "staff_in_use": "工作人员仍绑定着评价器，请先解除绑定",
    "window_retired": "窗口已撤销",
    "hall_retired": "大厅已撤销",
    "department_retired": "部门已撤销",
    "default_hall": "默认大厅（配置文件中的 [hall]）不能撤销",
    "nothing_to_change": "没有需要修改的内容",
    "bad_hall_id": "大厅编号只能包含字母、数字、_ . -（最多 32 个）",
    "bad_hall_kind": "请选择大厅类型",
    "hall_cycle": "大厅不能隶属于自己的下级",
    "bad_timezone": "时区不正确（如 Asia/Shanghai）",
    "bad_opening_hours": "办公时间格式不正确（如 09:00-12:00）",
    "bad_area_code": "行政区划代码应为 6 至 12 位数字",
}


def error_text(e: DomainError) -> str:
    """A refusal in Chinese: the service's own line when it is already Chinese, else the
    headline for its code with the service's specifics (which device, since when) after it."""
    text = str(e)
    if not text.isascii() and (e.code not in ERRORS or not re.search(r"[A-Za-z]{3,} [a-z]{2,}", text)):
        return text   # the console's own Chinese line (an English sentence gets its headline)
    known = ERRORS.get(e.code) or next((zh for cls, zh in KINDS if isinstance(e, cls)), "无法完成")
    return "%s（%s）" % (known, text)


KINDS: tuple[tuple[type[DomainError], str], ...] = (
    (BadInput, "输入有误"), (NotFound, "找不到"), (Conflict, "与现有数据冲突"),
    (Unavailable, "外部服务暂不可用"))


def flag_list(flags: str | None) -> list[tuple[str, str]]:
    return [(f, FLAG.get(f, f)) for f in (flags or "").split(",") if f]


def pct(v: float | None) -> str:
    return "—" if v is None else "%.1f%%" % (v * 100)


def action_label(action: str) -> str:
    return ACTIONS.get(action, action)


DETAIL_KEYS: dict[str, str] = {
    "subject": "对象", "device": "设备", "device_id": "设备", "window": "窗口", "staff": "工作人员",
    "binding_id": "绑定号", "forced": "强制移动", "why": "原因", "remote": "来源地址", "role": "角色",
    "halls": "大厅", "depts": "部门", "display_name": "姓名", "name": "名称", "dept_code": "部门代码",
    "case_no": "办件编号", "countdown_s": "倒计时（秒）", "fw": "固件", "sessions_ended": "结束会话",
    "must_change": "须改密码", "failures": "连续失败", "requeued": "重新排队", "code": "代码",
    "records": "记录", "selected": "勾选", "own": "本人修改",
}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, list):
        return "、".join(str(x) for x in v) or "（全部）"
    return "—" if v is None else str(v)


def detail_items(detail_json: str) -> list[tuple[str, str]]:
    """An audit row's detail as (Chinese key, value) pairs, subject first."""
    try:
        d = json.loads(detail_json)
    except ValueError:
        return [("详情", detail_json)]
    if not isinstance(d, dict):
        return [("详情", str(d))]
    keys = sorted(d, key=lambda k: (k != "subject", k))
    return [(DETAIL_KEYS.get(k, k), _value(d[k])) for k in keys]
