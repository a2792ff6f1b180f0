"""EMA teacher: closed form of the update, tau schedule, no update at tau = 1, shared modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from d2v.teacher import EMATeacher, tau_at


def test_tau_schedule_formula() -> None:
    assert tau_at(0, 0.999, 0.9999, 100) == pytest.approx(0.999)
    assert tau_at(50, 0.999, 0.9999, 100) == pytest.approx(0.999 + 0.5 * 0.0009)
    assert tau_at(100, 0.999, 0.9999, 100) == pytest.approx(0.9999)
    assert tau_at(10_000, 0.999, 0.9999, 100) == pytest.approx(0.9999)  # constant after
    assert tau_at(7, 0.9998, 0.9998, 0) == pytest.approx(0.9998)


def test_ema_matches_closed_form() -> None:
    """With a fixed student, after n updates: t_n = tau^n t_0 + (1 - tau^n) s."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7))
    teacher = EMATeacher(student)
    t0 = [p.detach().clone() for p in teacher.model.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    tau, n = 0.9, 13
    for _ in range(n):
        teacher.update(student, tau)
    for t, t_init, s in zip(teacher.model.parameters(), t0, student.parameters(), strict=True):
        expected = tau**n * t_init + (1 - tau**n) * s.detach()
        torch.testing.assert_close(t, expected, rtol=1e-5, atol=1e-6)


def test_tau_one_leaves_teacher_unchanged() -> None:
    student = nn.Linear(3, 3)
    teacher = EMATeacher(student)
    before = teacher.model.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update(student, 1.0)
    assert torch.equal(teacher.model.weight, before)


def test_teacher_is_frozen_copy_in_eval_mode() -> None:
    student = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    teacher = EMATeacher(student)
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    assert teacher.model[0].weight.data_ptr() != student[0].weight.data_ptr()


def test_shared_module_is_the_students_and_not_averaged() -> None:
    student = nn.Sequential()
    student.add_module("features", nn.Linear(3, 4))
    student.add_module("body", nn.Linear(4, 4))
    teacher = EMATeacher(student, shared=["features"])
    assert teacher.model.features is student.features
    assert teacher.names == ["body.weight", "body.bias"]
    assert set(teacher.state_dict()) == {"body.weight", "body.bias"}
    before = student.features.weight.clone()
    teacher.update(student, 0.5)
    assert torch.equal(student.features.weight, before)


def test_shared_module_stays_trainable_in_the_student() -> None:
    """The teacher freezes its own copy, never the student's modules it calls (the paper trains
    text's embeddings and speech's feature encoder in the student)."""
    student = nn.Sequential()
    student.add_module("features", nn.Linear(3, 4))
    student.add_module("body", nn.Linear(4, 4))
    teacher = EMATeacher(student, shared=["features"])
    assert all(p.requires_grad for p in student.parameters())
    assert not any(p.requires_grad for p in teacher.model.body.parameters())
    student(torch.randn(2, 3)).sum().backward()
    assert student.features.weight.grad is not None
