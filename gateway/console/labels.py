"""The Chinese words the console shows for the store's codes (grades, kinds, flags,
statuses, audit actions, domain error codes). Codes stay English in the store, logs and API."""

from __future__ import annotations

import json
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
}


def error_text(e: DomainError) -> str:
    """A refusal in Chinese: the service's own line when it is already Chinese, else the
    headline for its code with the service's specifics (which device, since when) after it."""
    text = str(e)
    if not text.isascii():
        return text
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
