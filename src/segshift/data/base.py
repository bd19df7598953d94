"""The dataset base class: loading, validation, subsets and error messages, written once.

A dataset subclass only finds its files (``find_files``) and, if its masks need it, says how
a mask becomes train ids (``read_label``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from segshift.data.io import image_size, read_image, read_mask
from segshift.data.label_space import IGNORE_INDEX, LabelSpace, common_label_space
from segshift.data.splits import keep_listed, read_split_file, subset_indices
from segshift.errors import DataError
from segshift.transforms import build_transform

Transform = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
Key = int | tuple[int, int] | tuple[int, int, int]

# DAFormer redraws a rare-class sample's crop up to 10 times (the last draw is kept).
RECROP_ATTEMPTS = 10


@dataclass(frozen=True)
class SampleFiles:
    """One sample on disk: its image, its mask (``None`` when unlabeled) and its name (stem)."""

    image: Path
    mask: Path | None
    name: str


class SegDataset(Dataset):
    """A segmentation dataset of image files and (optionally) mask files.

    Args:
        root: dataset directory.
        split: which part (``train``, ``val``, ...), interpreted by the subclass.
        labeled: load masks and return ``label``; ``False`` gives an unlabeled image set.
        domain: value of the ``domain`` key of each sample (defaults to the dataset name).
        transform: ``(image, mask, seed) -> (image tensor, label tensor)``; defaults to
            conversion to a tensor only.
        n_labeled: keep a deterministic subset of this many samples (drawn with ``subset_seed``).
        split_file: text file of sample names to keep (applied before ``n_labeled``), in the
            layouts of the published semi-supervised lists (see ``segshift.data.splits``).
        subset_seed: seed of the ``n_labeled`` subset.
        complement: keep the samples *not* in the ``n_labeled`` subset (the unlabeled rest).
        recrop_min_pixels: for keys that name a class (rare-class sampling), redraw the
            augmentation (its random crop) up to ``RECROP_ATTEMPTS`` times until the label holds
            more than this many pixels of the class, counted after augmentation; ``None``: never.
        remap: map the dataset's classes onto a common class list, ``{classes, map}`` (see
            ``label_space.common_label_space``), so that streams of different label spaces
            train together; ``label_space`` is then the common one.
        fit_masks: resize a mask whose size differs from its image's to the image's size
            (nearest neighbour; e.g. masks exported at another resolution) instead of raising a
            DataError; the names of the masks fitted so far are in ``fitted``.

    Samples are dicts: ``image`` float32 (3,H,W), ``label`` int64 (H,W) with 255 = ignore (only
    when labeled), ``domain`` str, ``name`` str, ``index`` int. ``dataset[i, seed]`` replays the
    same augmentation for the same ``(i, seed)``, and ``dataset[i, seed, c]`` the same crop
    chosen to show class ``c``.
    """

    dataset_name = "dataset"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        labeled: bool = True,
        domain: str | None = None,
        transform: Transform | None = None,
        n_labeled: int | None = None,
        split_file: str | Path | None = None,
        subset_seed: int = 0,
        complement: bool = False,
        recrop_min_pixels: float | None = None,
        remap: Mapping[str, Any] | None = None,
        fit_masks: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            state = "is not a directory" if self.root.exists() else "does not exist"
            raise DataError(f"{self.dataset_name} root {self.root} {state}")
        self.split = split
        self.labeled = labeled
        self.domain = domain or self.dataset_name
        self.transform = transform or build_transform(train=False)
        self.recrop_min_pixels = recrop_min_pixels
        self.fit_masks = bool(fit_masks)
        self.fitted: set[str] = set()  # masks resized to their image's size (fit_masks)
        self.label_space = self.build_label_space()
        self._own_label_space: LabelSpace | None = None
        self._to_common: np.ndarray | None = None
        if remap is not None:
            self._own_label_space = self.label_space
            self.label_space, self._to_common = common_label_space(self.label_space, remap)
        files = self.find_files()
        if not files:
            raise DataError(f"{self.dataset_name}: no images for split '{split}' under {self.root}")
        self.files = self._select(files, split_file, n_labeled, subset_seed, complement)

    # -- what subclasses provide -------------------------------------------------------------
    def build_label_space(self) -> LabelSpace:
        """The label space of this dataset (called before ``find_files``)."""
        raise NotImplementedError

    def find_files(self) -> list[SampleFiles]:
        """All samples of ``self.split``, sorted by name; masks are ``None`` when unlabeled."""
        raise NotImplementedError

    def read_label(self, sample: SampleFiles) -> np.ndarray:
        """The mask of ``sample`` as train ids (H,W) uint8. Default: raw ids via the label space."""
        assert sample.mask is not None
        return self.label_space.encode(read_mask(sample.mask))

    def split_key(self, name: str) -> str:
        """What a split file's entry is matched on: a sample name as written in the published
        lists of this dataset maps to the same key as the dataset's own name. Default: itself."""
        return name

    def _train_ids(self, sample: SampleFiles) -> np.ndarray:
        """The mask of ``sample`` as train ids of ``label_space`` (H,W) uint8, range-checked."""
        if self._to_common is None:
            return self.label_space.check_train_ids(self.read_label(sample), sample.mask)
        # read_label reads self.label_space: give it a view that still has the own classes
        own = copy.copy(self)
        own.label_space = self._own_label_space
        own_ids = own.label_space.check_train_ids(own.read_label(sample), sample.mask)
        return self._to_common[own_ids]

    # -- shared helpers for subclasses ------------------------------------------------------
    def require_dir(self, path: Path) -> Path:
        """``path`` if it is a directory, else a DataError naming it."""
        if not path.is_dir():
            state = "is not a directory" if path.exists() else "does not exist"
            raise DataError(f"{self.dataset_name}: directory {path} {state}")
        return path

    def pair(self, images: list[Path], mask_of: Callable[[Path], Path]) -> list[SampleFiles]:
        """Attach to each image its mask ``mask_of(image)``; a missing mask is a DataError."""
        samples = []
        for image in images:
            mask = None
            if self.labeled:
                mask = mask_of(image)
                if not mask.is_file():
                    raise DataError(
                        f"{self.dataset_name}: no mask for image {image} (expected {mask})"
                    )
            samples.append(SampleFiles(image, mask, image.stem))
        return samples

    # -- loading -------------------------------------------------------------------------------
    def _select(
        self,
        files: list[SampleFiles],
        split_file: str | Path | None,
        n_labeled: int | None,
        subset_seed: int,
        complement: bool,
    ) -> list[SampleFiles]:
        if split_file is not None:
            path = Path(split_file).expanduser()
            if not path.is_absolute() and not path.exists():
                path = self.root / path
            keep = keep_listed(
                [f.name for f in files], read_split_file(path), path, key=self.split_key
            )
            files = [files[i] for i in keep]
        if n_labeled is not None:
            try:
                chosen = set(subset_indices(len(files), n_labeled, subset_seed))
            except ValueError as error:
                raise DataError(f"{self.dataset_name} at {self.root}: {error}") from error
            files = [f for i, f in enumerate(files) if (i in chosen) != complement]
            if not files:
                raise DataError(
                    f"{self.dataset_name} at {self.root}: the complement of the subset is empty"
                )
        return files

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Image (H,W,3) uint8 and train ids (H,W) uint8 (``None`` when unlabeled), validated."""
        sample = self.files[index]
        image = read_image(sample.image)
        if not self.labeled:
            return image, None
        return image, self.fit_label(self._train_ids(sample), image.shape[:2], sample)

    def fit_label(
        self, label: np.ndarray, size: tuple[int, int], sample: SampleFiles
    ) -> np.ndarray:
        """``label`` if it has the image's ``size`` (H, W); resized to it (nearest) with
        ``fit_masks``; else a DataError naming both files."""
        if label.shape == tuple(size):
            return label
        if not self.fit_masks:
            raise DataError(
                f"{sample.mask}: mask size {label.shape[1]}x{label.shape[0]} does not match image "
                f"{sample.image} size {size[1]}x{size[0]} (width x height); options.fit_masks: "
                "true resizes masks to their images (nearest)"
            )
        self.fitted.add(sample.name)
        return cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)

    def load_label(self, index: int) -> np.ndarray:
        """Train ids (H,W) uint8 of a labeled sample at full resolution, without its image
        (with ``fit_masks``, at its image's size, read from the file's header)."""
        sample = self.files[index]
        label = self._train_ids(sample)
        if self.fit_masks:
            label = self.fit_label(label, image_size(sample.image), sample)
        return label

    def _augment(
        self,
        image: np.ndarray,
        label: np.ndarray | None,
        seed: int | None,
        focus: int | None,
        path: Path | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``transform(image, label, seed)``; with a ``focus`` class, redrawn with seeds derived
        from ``seed`` until the label shows enough of it (DAFormer's rare-class re-crop)."""
        image_tensor, label_tensor = self._transform(image, label, seed, path)
        if focus is None or label_tensor is None or not self.recrop_min_pixels:
            return image_tensor, label_tensor
        for attempt in range(1, RECROP_ATTEMPTS + 1):
            if int((label_tensor == focus).sum()) > self.recrop_min_pixels:
                break
            retry_seed = None
            if seed is not None:
                retry_seed = int(np.random.SeedSequence((seed, attempt)).generate_state(1)[0])
            image_tensor, label_tensor = self._transform(image, label, retry_seed, path)
        return image_tensor, label_tensor

    def _transform(
        self, image: np.ndarray, label: np.ndarray | None, seed: int | None, path: Path | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``transform(image, label, seed)``; an image the augmentation cannot handle (a 1x1
        thumbnail scaled to nothing) is a DataError naming its file, not OpenCV's assertion."""
        try:
            return self.transform(image, label, seed)
        except (cv2.error, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise DataError(
                f"{path}: cannot augment this {image.shape[0]}x{image.shape[1]} (HxW) "
                f"image ({first.strip()}); `segshift data check` lists images this small"
            ) from None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        """``key``: an index, ``(index, augmentation seed)`` or ``(index, seed, class to show)``."""
        index, seed, focus = (*key, None)[:3] if isinstance(key, tuple) else (key, None, None)
        index = int(index)
        if index < 0:
            index += len(self)
        image, label = self.load(index)
        path = self.files[index].image
        if label is None:
            # an unlabeled image goes through the pipeline with an all-zero mask, so that the
            # pixels a crop pads (mask 255) are known: ``valid`` is False there (UniMatch ignores
            # padding in its unlabeled loss). Only when the mask kept the image's size (training)
            pad = np.zeros(image.shape[:2], np.uint8)
            image_tensor, pad_tensor = self._augment(image, pad, seed, None, path)
            sample = self._sample(image_tensor, index)
            if pad_tensor is not None and pad_tensor.shape == image_tensor.shape[-2:]:
                sample["valid"] = pad_tensor != IGNORE_INDEX
            return sample
        image_tensor, label_tensor = self._augment(image, label, seed, focus, path)
        sample = self._sample(image_tensor, index)
        sample["label"] = label_tensor
        return sample

    def _sample(self, image: torch.Tensor, index: int) -> dict[str, Any]:
        return {
            "image": image,
            "domain": self.domain,
            "name": self.files[index].name,
            "index": index,
        }

    def __repr__(self) -> str:
        kind = "labeled" if self.labeled else "unlabeled"
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"{len(self)} {kind} samples, {self.label_space.num_classes} classes)"
        )
