//! Image builds (disk images we built) and image uploads (a build uploaded to a provider).

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::macros::text_enum;
use super::{Reader, StateError, WriteTx, json_column, now_unix};

text_enum! {
    /// A disk-image build: `building → ready | failed | deleting`, `ready → deleting`,
    /// `failed → deleting`; the row is removed from `deleting` once its files are gone.
    pub enum BuildState ("build state") {
        Building => "building",
        Ready => "ready",
        Failed => "failed",
        Deleting => "deleting",
    }
}

impl BuildState {
    pub fn can_transition_to(self, to: BuildState) -> bool {
        use BuildState::*;
        matches!(
            (self, to),
            (Building, Ready | Failed | Deleting) | (Ready, Deleting) | (Failed, Deleting)
        )
    }
}

text_enum! {
    /// An upload: `uploading → ready | failed | deleting`, `ready → deleting`,
    /// `failed → deleting`; the row is removed from `deleting` once the cloud image is gone.
    /// A retry after `failed` is a new upload row (attempts within one row count the
    /// re-sends of a single upload).
    pub enum UploadState ("upload state") {
        Uploading => "uploading",
        Ready => "ready",
        Failed => "failed",
        Deleting => "deleting",
    }
}

impl UploadState {
    pub fn can_transition_to(self, to: UploadState) -> bool {
        use UploadState::*;
        matches!(
            (self, to),
            (Uploading, Ready | Failed | Deleting) | (Ready, Deleting) | (Failed, Deleting)
        )
    }
}

/// An image build row (`nodepool dib-image-list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuild {
    pub id: String,
    pub image_name: String,
    pub state: BuildState,
    pub state_time: i64,
    /// Formats produced (`qcow2`, `raw`, `vhd`, ...).
    pub formats: Vec<String>,
    /// Hostname of the builder.
    pub builder: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    pub log_path: Option<String>,
    pub size_bytes: Option<i64>,
    /// Formats whose local files were removed once every provider had the build
    /// (`delete-after-upload`); `formats` still says what was built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_formats: Vec<String>,
}

impl ImageBuild {
    /// Whether the file of `format` is still on disk (built and not pruned).
    pub fn has_file(&self, format: &str) -> bool {
        self.formats.iter().any(|f| f == format) && !self.pruned_formats.iter().any(|f| f == format)
    }
}

/// An image paused with `nodepool image-pause`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePause {
    pub image_name: String,
    pub paused_at: i64,
    pub reason: Option<String>,
}

/// A build to start (state `building`, started now).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewBuild {
    pub image_name: String,
    pub builder: Option<String>,
    pub log_path: Option<String>,
}

/// An image upload row (`nodepool image-list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUpload {
    pub id: String,
    /// The build uploaded (`None` for an image not built here).
    pub build_id: Option<String>,
    pub image_name: String,
    pub provider: String,
    pub format: Option<String>,
    pub state: UploadState,
    pub state_time: i64,
    pub created_at: i64,
    #[serde(flatten)]
    pub details: UploadDetails,
}

/// The mutable attributes of an upload (changed with [`WriteTx::update_upload`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadDetails {
    /// The cloud's image id, once known.
    pub external_id: Option<String>,
    /// The image name in the cloud.
    pub external_name: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// An upload to start (state `uploading`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewUpload {
    pub build_id: Option<String>,
    pub image_name: String,
    pub provider: String,
    pub format: Option<String>,
    pub external_name: String,
}

/// An image found in a cloud and taken over as a ready upload (`nodepool image-adopt`): one
/// uploaded by upstream Nodepool, carrying its ownership properties, that no record owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdoptedUpload {
    pub image_name: String,
    pub provider: String,
    pub format: Option<String>,
    pub external_id: String,
    pub external_name: String,
    /// When the cloud created the image (unix seconds): rotation keeps the newest.
    pub created_at: i64,
}

const BUILD_SELECT: &str = "SELECT id, image_name, state, state_time, formats, builder, \
                            started_at, finished_at, exit_code, log_path, size_bytes, pruned_formats \
                            FROM image_builds";

const UPLOAD_SELECT: &str = "SELECT id, build_id, image_name, provider, format, state, state_time, \
                             created_at, external_id, external_name, attempts, last_error FROM image_uploads";

fn build_from_row(r: &Row<'_>) -> rusqlite::Result<ImageBuild> {
    Ok(ImageBuild {
        id: r.get(0)?,
        image_name: r.get(1)?,
        state: r.get(2)?,
        state_time: r.get(3)?,
        formats: json_column(r, 4)?,
        builder: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        exit_code: r.get(8)?,
        log_path: r.get(9)?,
        size_bytes: r.get(10)?,
        pruned_formats: json_column(r, 11)?,
    })
}

fn upload_from_row(r: &Row<'_>) -> rusqlite::Result<ImageUpload> {
    Ok(ImageUpload {
        id: r.get(0)?,
        build_id: r.get(1)?,
        image_name: r.get(2)?,
        provider: r.get(3)?,
        format: r.get(4)?,
        state: r.get(5)?,
        state_time: r.get(6)?,
        created_at: r.get(7)?,
        details: UploadDetails {
            external_id: r.get(8)?,
            external_name: r.get(9)?,
            attempts: r.get(10)?,
            last_error: r.get(11)?,
        },
    })
}

fn not_found(kind: &'static str, id: &str) -> StateError {
    StateError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

impl WriteTx<'_> {
    /// Starts a build record (state `building`).
    pub fn insert_build(&self, new: &NewBuild) -> Result<ImageBuild, StateError> {
        let now = now_unix();
        let build = ImageBuild {
            id: self.next_text_id("build")?,
            image_name: new.image_name.clone(),
            state: BuildState::Building,
            state_time: now,
            formats: Vec::new(),
            builder: new.builder.clone(),
            started_at: now,
            finished_at: None,
            exit_code: None,
            log_path: new.log_path.clone(),
            size_bytes: None,
            pruned_formats: Vec::new(),
        };
        self.tx
            .prepare_cached(
                "INSERT INTO image_builds (id, image_name, state, state_time, formats, builder, \
                 started_at, finished_at, exit_code, log_path, size_bytes) \
                 VALUES (?1, ?2, ?3, ?4, '[]', ?5, ?6, NULL, NULL, ?7, NULL)",
            )?
            .execute(params![
                build.id,
                build.image_name,
                build.state,
                build.state_time,
                build.builder,
                build.started_at,
                build.log_path
            ])?;
        Ok(build)
    }

    /// Records the end of a build: `ready` with its formats and size if `exit_code` is 0,
    /// `failed` otherwise.
    pub fn finish_build(
        &self,
        id: &str,
        exit_code: i32,
        formats: &[String],
        size_bytes: Option<i64>,
    ) -> Result<ImageBuild, StateError> {
        let to = if exit_code == 0 {
            BuildState::Ready
        } else {
            BuildState::Failed
        };
        self.set_build_state(id, to)?;
        self.tx
            .prepare_cached(
                "UPDATE image_builds SET finished_at = ?2, exit_code = ?3, formats = ?4, \
                 size_bytes = ?5 WHERE id = ?1",
            )?
            .execute(params![
                id,
                now_unix(),
                exit_code,
                serde_json::to_string(formats)?,
                size_bytes
            ])?;
        self.read().build(id)?.ok_or_else(|| not_found("build", id))
    }

    /// Moves a build along [`BuildState::can_transition_to`].
    pub fn set_build_state(&self, id: &str, to: BuildState) -> Result<ImageBuild, StateError> {
        let mut build = self
            .read()
            .build(id)?
            .ok_or_else(|| not_found("build", id))?;
        if !build.state.can_transition_to(to) {
            return Err(StateError::IllegalTransition {
                kind: "build",
                id: id.to_owned(),
                from: build.state.to_string(),
                to: to.to_string(),
            });
        }
        let now = now_unix();
        self.tx
            .prepare_cached("UPDATE image_builds SET state = ?2, state_time = ?3 WHERE id = ?1")?
            .execute(params![id, to, now])?;
        build.state = to;
        build.state_time = now;
        Ok(build)
    }

    /// Removes a `deleting` build that has no upload rows left.
    pub fn remove_build(&self, id: &str) -> Result<(), StateError> {
        let build = self
            .read()
            .build(id)?
            .ok_or_else(|| not_found("build", id))?;
        if build.state != BuildState::Deleting {
            return Err(StateError::IllegalTransition {
                kind: "build",
                id: id.to_owned(),
                from: build.state.to_string(),
                to: "removed".into(),
            });
        }
        // The foreign key from image_uploads refuses the delete while uploads remain.
        self.tx
            .prepare_cached("DELETE FROM image_builds WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }

    /// Starts an upload record (state `uploading`, 0 attempts).
    pub fn insert_upload(&self, new: &NewUpload) -> Result<ImageUpload, StateError> {
        let now = now_unix();
        let upload = ImageUpload {
            id: self.next_text_id("upload")?,
            build_id: new.build_id.clone(),
            image_name: new.image_name.clone(),
            provider: new.provider.clone(),
            format: new.format.clone(),
            state: UploadState::Uploading,
            state_time: now,
            created_at: now,
            details: UploadDetails {
                external_id: None,
                external_name: new.external_name.clone(),
                attempts: 0,
                last_error: None,
            },
        };
        self.insert_upload_row(&upload)?;
        Ok(upload)
    }

    /// Records an image already in the cloud as a `ready` upload of no build of ours. Refused
    /// if an upload record already owns that cloud image.
    pub fn adopt_upload(&self, new: &AdoptedUpload) -> Result<ImageUpload, StateError> {
        let owned: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT id FROM image_uploads WHERE provider = ?1 AND external_id = ?2 LIMIT 1",
            )?
            .query_row(params![new.provider, new.external_id], |r| r.get(0))
            .optional()?;
        if let Some(id) = owned {
            return Err(StateError::Invalid(format!(
                "image {} in provider {} is already upload {id}",
                new.external_id, new.provider
            )));
        }
        let now = now_unix();
        let upload = ImageUpload {
            id: self.next_text_id("upload")?,
            build_id: None,
            image_name: new.image_name.clone(),
            provider: new.provider.clone(),
            format: new.format.clone(),
            state: UploadState::Ready,
            state_time: now,
            created_at: new.created_at,
            details: UploadDetails {
                external_id: Some(new.external_id.clone()),
                external_name: new.external_name.clone(),
                attempts: 0,
                last_error: None,
            },
        };
        self.insert_upload_row(&upload)?;
        Ok(upload)
    }

    fn insert_upload_row(&self, u: &ImageUpload) -> Result<(), StateError> {
        self.tx
            .prepare_cached(
                "INSERT INTO image_uploads (id, build_id, image_name, provider, format, state, \
                 state_time, created_at, external_id, external_name, attempts, last_error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                u.id,
                u.build_id,
                u.image_name,
                u.provider,
                u.format,
                u.state,
                u.state_time,
                u.created_at,
                u.details.external_id,
                u.details.external_name,
                u.details.attempts,
                u.details.last_error
            ])?;
        Ok(())
    }

    /// Moves an upload along [`UploadState::can_transition_to`].
    pub fn set_upload_state(&self, id: &str, to: UploadState) -> Result<ImageUpload, StateError> {
        let mut upload = self
            .read()
            .upload(id)?
            .ok_or_else(|| not_found("upload", id))?;
        if !upload.state.can_transition_to(to) {
            return Err(StateError::IllegalTransition {
                kind: "upload",
                id: id.to_owned(),
                from: upload.state.to_string(),
                to: to.to_string(),
            });
        }
        let now = now_unix();
        self.tx
            .prepare_cached("UPDATE image_uploads SET state = ?2, state_time = ?3 WHERE id = ?1")?
            .execute(params![id, to, now])?;
        upload.state = to;
        upload.state_time = now;
        Ok(upload)
    }

    /// Changes an upload's details (never its state).
    pub fn update_upload(
        &self,
        id: &str,
        f: impl FnOnce(&mut UploadDetails),
    ) -> Result<ImageUpload, StateError> {
        let mut upload = self
            .read()
            .upload(id)?
            .ok_or_else(|| not_found("upload", id))?;
        f(&mut upload.details);
        let d = &upload.details;
        self.tx
            .prepare_cached(
                "UPDATE image_uploads SET external_id = ?2, external_name = ?3, attempts = ?4, \
                 last_error = ?5 WHERE id = ?1",
            )?
            .execute(params![
                id,
                d.external_id,
                d.external_name,
                d.attempts,
                d.last_error
            ])?;
        Ok(upload)
    }

    /// Removes a `deleting` upload (its cloud image is gone).
    pub fn remove_upload(&self, id: &str) -> Result<(), StateError> {
        let upload = self
            .read()
            .upload(id)?
            .ok_or_else(|| not_found("upload", id))?;
        if upload.state != UploadState::Deleting {
            return Err(StateError::IllegalTransition {
                kind: "upload",
                id: id.to_owned(),
                from: upload.state.to_string(),
                to: "removed".into(),
            });
        }
        self.tx
            .prepare_cached("DELETE FROM image_uploads WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }
}

impl Reader<'_> {
    fn query_builds(
        &self,
        tail: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<ImageBuild>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{BUILD_SELECT} {tail}"))?;
        let rows = stmt.query_map(p, build_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn query_uploads(
        &self,
        tail: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<ImageUpload>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{UPLOAD_SELECT} {tail}"))?;
        let rows = stmt.query_map(p, upload_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn build(&self, id: &str) -> Result<Option<ImageBuild>, StateError> {
        Ok(self
            .conn
            .prepare_cached(&format!("{BUILD_SELECT} WHERE id = ?1"))?
            .query_row(params![id], build_from_row)
            .optional()?)
    }

    /// Every build, by image then id (`nodepool dib-image-list`).
    pub fn builds(&self) -> Result<Vec<ImageBuild>, StateError> {
        self.query_builds("ORDER BY image_name, id", [])
    }

    /// The builds of one image, newest first.
    pub fn builds_of_image(&self, image_name: &str) -> Result<Vec<ImageBuild>, StateError> {
        self.query_builds(
            "WHERE image_name = ?1 ORDER BY id DESC",
            params![image_name],
        )
    }

    pub fn upload(&self, id: &str) -> Result<Option<ImageUpload>, StateError> {
        Ok(self
            .conn
            .prepare_cached(&format!("{UPLOAD_SELECT} WHERE id = ?1"))?
            .query_row(params![id], upload_from_row)
            .optional()?)
    }

    /// Every upload, by image, provider, then id (`nodepool image-list`).
    pub fn uploads(&self) -> Result<Vec<ImageUpload>, StateError> {
        self.query_uploads("ORDER BY image_name, provider, id", [])
    }

    /// The uploads of one image to one provider, newest first.
    pub fn uploads_for(
        &self,
        image_name: &str,
        provider: &str,
    ) -> Result<Vec<ImageUpload>, StateError> {
        self.query_uploads(
            "WHERE image_name = ?1 AND provider = ?2 ORDER BY id DESC",
            params![image_name, provider],
        )
    }

    /// Every upload to one provider, in id order (`info PROVIDER`; the images we own there,
    /// which `alien-image-list` subtracts from what the cloud lists).
    pub fn uploads_of_provider(&self, provider: &str) -> Result<Vec<ImageUpload>, StateError> {
        self.query_uploads("WHERE provider = ?1 ORDER BY id", params![provider])
    }

    /// The uploads of one build.
    pub fn uploads_of_build(&self, build_id: &str) -> Result<Vec<ImageUpload>, StateError> {
        self.query_uploads("WHERE build_id = ?1 ORDER BY id", params![build_id])
    }
}

impl WriteTx<'_> {
    /// Records where a build's log is (known once its id is).
    pub fn set_build_log(&self, id: &str, log_path: &str) -> Result<(), StateError> {
        self.tx
            .prepare_cached("UPDATE image_builds SET log_path = ?2 WHERE id = ?1")?
            .execute(params![id, log_path])?;
        Ok(())
    }

    /// Records that the local files of `formats` of a ready build are gone (added to what was
    /// pruned before). Only formats the build has can be pruned.
    pub fn prune_build_formats(
        &self,
        id: &str,
        formats: &[String],
    ) -> Result<ImageBuild, StateError> {
        let mut build = self
            .read()
            .build(id)?
            .ok_or_else(|| not_found("build", id))?;
        if build.state != BuildState::Ready {
            return Err(StateError::IllegalTransition {
                kind: "build",
                id: id.to_owned(),
                from: build.state.to_string(),
                to: "pruned".into(),
            });
        }
        for f in formats {
            if !build.formats.contains(f) {
                return Err(StateError::Invalid(format!(
                    "build {id} has no {f} file to prune (built: {})",
                    build.formats.join(", ")
                )));
            }
            if !build.pruned_formats.contains(f) {
                build.pruned_formats.push(f.clone());
            }
        }
        build.pruned_formats.sort();
        self.tx
            .prepare_cached("UPDATE image_builds SET pruned_formats = ?2 WHERE id = ?1")?
            .execute(params![id, serde_json::to_string(&build.pruned_formats)?])?;
        Ok(build)
    }

    /// Pauses builds and uploads of an image (`nodepool image-pause`). Returns `false` if it
    /// was already paused (the first pause's time and reason stay).
    pub fn pause_image(&self, image_name: &str, reason: Option<&str>) -> Result<bool, StateError> {
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO image_pauses (image_name, paused_at, reason) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (image_name) DO NOTHING",
            )?
            .execute(params![image_name, now_unix(), reason])?;
        Ok(n == 1)
    }

    /// Lifts an operator pause. Returns `false` if the image was not paused.
    pub fn unpause_image(&self, image_name: &str) -> Result<bool, StateError> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM image_pauses WHERE image_name = ?1")?
            .execute(params![image_name])?;
        Ok(n == 1)
    }
}

impl Reader<'_> {
    /// Images paused with `nodepool image-pause`, by name.
    pub fn image_pauses(&self) -> Result<Vec<ImagePause>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT image_name, paused_at, reason FROM image_pauses ORDER BY image_name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ImagePause {
                image_name: r.get(0)?,
                paused_at: r.get(1)?,
                reason: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    #[test]
    fn build_lifecycle() {
        let mut store = Store::open_in_memory().unwrap();
        let new = NewBuild {
            image_name: "ubuntu-noble".into(),
            builder: Some("nb01".into()),
            log_path: Some("/var/log/nodepool/builds/ubuntu-noble-0000000001.log".into()),
        };
        let b1 = store.write(|w| w.insert_build(&new)).unwrap();
        let b2 = store.write(|w| w.insert_build(&new)).unwrap();
        assert_eq!(b1.state, BuildState::Building);
        let done = store
            .write(|w| w.finish_build(&b1.id, 0, &["qcow2".into(), "raw".into()], Some(4096)))
            .unwrap();
        assert_eq!(done.state, BuildState::Ready);
        assert_eq!(done.formats, vec!["qcow2", "raw"]);
        assert_eq!(done.exit_code, Some(0));
        assert!(done.finished_at.is_some());
        let failed = store
            .write(|w| w.finish_build(&b2.id, 1, &[], None))
            .unwrap();
        assert_eq!(failed.state, BuildState::Failed);
        let newest: Vec<_> = store
            .read()
            .builds_of_image("ubuntu-noble")
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(newest, vec![b2.id.clone(), b1.id.clone()]);
        // ready -> building is not a transition; removal only from deleting.
        assert!(
            store
                .write(|w| w.set_build_state(&b1.id, BuildState::Building))
                .is_err()
        );
        assert!(store.write(|w| w.remove_build(&b1.id)).is_err());
        store
            .write(|w| w.set_build_state(&b1.id, BuildState::Deleting))
            .unwrap();
        store.write(|w| w.remove_build(&b1.id)).unwrap();
        assert_eq!(store.read().builds().unwrap().len(), 1);
    }

    #[test]
    fn uploads_newest_first_and_build_kept_while_uploaded() {
        let mut store = Store::open_in_memory().unwrap();
        let build = store
            .write(|w| {
                w.insert_build(&NewBuild {
                    image_name: "img".into(),
                    ..NewBuild::default()
                })
            })
            .unwrap();
        let new = |provider: &str| NewUpload {
            build_id: Some(build.id.clone()),
            image_name: "img".into(),
            provider: provider.into(),
            format: Some("qcow2".into()),
            external_name: format!("img-{}", build.id),
        };
        let u1 = store.write(|w| w.insert_upload(&new("a"))).unwrap();
        let _u2 = store.write(|w| w.insert_upload(&new("b"))).unwrap();
        let u3 = store.write(|w| w.insert_upload(&new("a"))).unwrap();
        let for_a: Vec<_> = store
            .read()
            .uploads_for("img", "a")
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(for_a, vec![u3.id.clone(), u1.id.clone()]);
        let ready = store
            .write(|w| {
                w.update_upload(&u1.id, |d| {
                    d.external_id = Some("9f0c-image-uuid".into());
                    d.attempts = 1;
                })?;
                w.set_upload_state(&u1.id, UploadState::Ready)
            })
            .unwrap();
        assert_eq!(
            ready.details.external_id.as_deref(),
            Some("9f0c-image-uuid")
        );
        assert_eq!(store.read().uploads_of_build(&build.id).unwrap().len(), 3);
        assert_eq!(store.read().uploads_of_provider("b").unwrap().len(), 1);

        // A build with uploads cannot be removed (foreign key), even from deleting.
        store
            .write(|w| {
                w.finish_build(&build.id, 0, &["qcow2".into()], None)?;
                w.set_build_state(&build.id, BuildState::Deleting)
            })
            .unwrap();
        assert!(store.write(|w| w.remove_build(&build.id)).is_err());
        assert!(store.write(|w| w.remove_upload(&u1.id)).is_err());
        store
            .write(|w| {
                for u in w.read().uploads_of_build(&build.id)? {
                    w.set_upload_state(&u.id, UploadState::Deleting)?;
                    w.remove_upload(&u.id)?;
                }
                w.remove_build(&build.id)
            })
            .unwrap();
        assert!(store.read().uploads().unwrap().is_empty());
    }

    #[test]
    fn pruned_formats_accumulate_on_ready_builds_only() {
        let mut store = Store::open_in_memory().unwrap();
        let b = store
            .write(|w| {
                w.insert_build(&NewBuild {
                    image_name: "img".into(),
                    ..NewBuild::default()
                })
            })
            .unwrap();
        // Not ready yet: nothing to prune.
        assert!(matches!(
            store.write(|w| w.prune_build_formats(&b.id, &["qcow2".into()])),
            Err(StateError::IllegalTransition { .. })
        ));
        store
            .write(|w| {
                w.finish_build(
                    &b.id,
                    0,
                    &["qcow2".into(), "raw".into(), "vhd".into()],
                    None,
                )
            })
            .unwrap();
        // A format that was never built is refused.
        assert!(matches!(
            store.write(|w| w.prune_build_formats(&b.id, &["tar".into()])),
            Err(StateError::Invalid(_))
        ));
        store
            .write(|w| w.prune_build_formats(&b.id, &["vhd".into()]))
            .unwrap();
        let after = store
            .write(|w| w.prune_build_formats(&b.id, &["qcow2".into(), "vhd".into()]))
            .unwrap();
        assert_eq!(after.pruned_formats, ["qcow2", "vhd"]);
        let read = store.read().build(&b.id).unwrap().unwrap();
        assert_eq!(read.pruned_formats, ["qcow2", "vhd"]);
        assert_eq!(read.formats, ["qcow2", "raw", "vhd"]);
        assert!(read.has_file("raw"));
        assert!(!read.has_file("qcow2"));
        assert!(!read.has_file("tar"));
    }

    #[test]
    fn pauses_are_idempotent() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(
            store
                .write(|w| w.pause_image("noble", Some("CVE")))
                .unwrap()
        );
        assert!(
            !store
                .write(|w| w.pause_image("noble", Some("other")))
                .unwrap()
        );
        assert!(store.write(|w| w.pause_image("jammy", None)).unwrap());
        let pauses = store.read().image_pauses().unwrap();
        assert_eq!(
            pauses
                .iter()
                .map(|p| (p.image_name.as_str(), p.reason.as_deref()))
                .collect::<Vec<_>>(),
            [("jammy", None), ("noble", Some("CVE"))]
        );
        assert!(store.write(|w| w.unpause_image("noble")).unwrap());
        assert!(!store.write(|w| w.unpause_image("noble")).unwrap());
        assert_eq!(store.read().image_pauses().unwrap().len(), 1);
    }

    #[test]
    fn state_machines() {
        for from in UploadState::ALL {
            assert!(!from.can_transition_to(*from));
            assert!(!from.can_transition_to(UploadState::Uploading));
        }
        for from in BuildState::ALL {
            assert!(!from.can_transition_to(BuildState::Building));
        }
        assert!(UploadState::Uploading.can_transition_to(UploadState::Ready));
        assert!(!UploadState::Deleting.can_transition_to(UploadState::Ready));
        assert!(!BuildState::Failed.can_transition_to(BuildState::Ready));
    }
}
