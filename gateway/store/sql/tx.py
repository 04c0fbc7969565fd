"""The unit of work over SQL: one transaction, every repository on its connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from gateway.store.sql.accounts import SqlConsoleAccounts, SqlConsoleSessions
from gateway.store.sql.cases import SqlCases
from gateway.store.sql.complaints import SqlComplaints
from gateway.store.sql.conn import Conn
from gateway.store.sql.devices import SqlDevices
from gateway.store.sql.figures import SqlFigures
from gateway.store.sql.invitations import SqlInvitations
from gateway.store.sql.misc import SqlAudit, SqlChanges, SqlLeases, SqlSchema
from gateway.store.sql.ops import SqlAlerts, SqlOps
from gateway.store.sql.org import SqlBindings, SqlOrg
from gateway.store.sql.presence import SqlPresence
from gateway.store.sql.qr import SqlQr
from gateway.store.sql.records import SqlAnchors, SqlRecords, SqlRejections
from gateway.store.sql.uplink import SqlUplink


class SqlTx:
    def __init__(self, conn: Conn) -> None:
        self.raw = conn   # tests and store tooling only: domain code uses the repositories

    @cached_property
    def records(self) -> SqlRecords:
        return SqlRecords(self.raw)

    @cached_property
    def anchors(self) -> SqlAnchors:
        return SqlAnchors(self.raw)

    @cached_property
    def rejections(self) -> SqlRejections:
        return SqlRejections(self.raw)

    @cached_property
    def devices(self) -> SqlDevices:
        return SqlDevices(self.raw)

    @cached_property
    def org(self) -> SqlOrg:
        return SqlOrg(self.raw)

    @cached_property
    def cases(self) -> SqlCases:
        return SqlCases(self.raw)

    @cached_property
    def figures(self) -> SqlFigures:
        return SqlFigures(self.raw)

    @cached_property
    def presence(self) -> SqlPresence:
        return SqlPresence(self.raw)

    @cached_property
    def bindings(self) -> SqlBindings:
        return SqlBindings(self.raw)

    @cached_property
    def invitations(self) -> SqlInvitations:
        return SqlInvitations(self.raw)

    @cached_property
    def uplink(self) -> SqlUplink:
        return SqlUplink(self.raw)

    @cached_property
    def complaints(self) -> SqlComplaints:
        return SqlComplaints(self.raw)

    @cached_property
    def qr(self) -> SqlQr:
        return SqlQr(self.raw)

    @cached_property
    def audit(self) -> SqlAudit:
        return SqlAudit(self.raw)

    @cached_property
    def changes(self) -> SqlChanges:
        return SqlChanges(self.raw)

    @cached_property
    def leases(self) -> SqlLeases:
        return SqlLeases(self.raw)

    @cached_property
    def schema(self) -> SqlSchema:
        return SqlSchema(self.raw)

    @cached_property
    def alerts(self) -> SqlAlerts:
        return SqlAlerts(self.raw)

    @cached_property
    def ops(self) -> SqlOps:
        return SqlOps(self.raw)

    @cached_property
    def accounts(self) -> SqlConsoleAccounts:
        return SqlConsoleAccounts(self.raw)

    @cached_property
    def sessions(self) -> SqlConsoleSessions:
        return SqlConsoleSessions(self.raw)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.raw.savepoint():
            yield
