//! Apply, the builder's actions: diskimage builds, pruning and deletion of their files, uploads
//! and their deletion.

use super::*;

impl Applier {
    pub(super) fn dirs(&self) -> Result<&crate::builder::BuildDirs, String> {
        self.options
            .build_dirs
            .as_ref()
            .ok_or_else(|| "no build directories configured for image actions".to_owned())
    }

    /// Build a diskimage, or delete a build's files and record.
    pub(super) async fn build(&self, seq: i64, a: &Action) -> Result<String, String> {
        let dirs = self.dirs()?.clone();
        match &a.kind {
            ActionKind::BuildImage { image, formats } => {
                let Some(di) = self.config.diskimage(image) else {
                    return Err(format!("diskimage {image} is no longer configured"));
                };
                let builder = crate::ops::apply::hostname();
                let (row, j) = self
                    .write(|w| {
                        let row = w.insert_build(&crate::state::NewBuild {
                            image_name: image.clone(),
                            builder: Some(builder.clone()),
                            log_path: None,
                        })?;
                        let j = self.journal(w, seq, "build-image", a)?;
                        w.journal_start(j)?;
                        Ok((row, j))
                    })
                    .map_err(|e| e.to_string())?;
                let req = crate::builder::BuildRequest::new(di, &row.id, formats.clone(), dirs);
                let log = req.log_path().display().to_string();
                let _ = self.write(|w| w.set_build_log(&row.id, &log));
                match crate::builder::build(&req).await {
                    Ok(out) => {
                        let formats: Vec<String> =
                            out.files.iter().map(|f| f.format.clone()).collect();
                        self.write(|w| {
                            w.finish_build(
                                &row.id,
                                0,
                                &formats,
                                i64::try_from(out.total_size).ok(),
                            )?;
                            w.journal_done(j).map(|_| ())
                        })
                        .map_err(|e| e.to_string())?;
                        self.built
                            .lock()
                            .expect("built lock")
                            .insert(image.clone(), row.id.clone());
                        Ok(format!(
                            "build {} ready: {} ({}) in {:.1}s",
                            row.id,
                            formats.join(", "),
                            human_size(out.total_size),
                            out.duration.as_secs_f64()
                        ))
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let code = e.exit_code().unwrap_or(-1);
                        let _ = self.write(|w| {
                            w.finish_build(&row.id, code, &[], None)?;
                            w.journal_fail(j, &msg).map(|_| ())
                        });
                        Err(format!("build {} failed: {msg} (log: {log})", row.id))
                    }
                }
            }
            ActionKind::DeleteBuild { image, build_id } => {
                let j = self
                    .write(|w| {
                        let j = self.journal(w, seq, "delete-build", a)?;
                        w.journal_start(j)?;
                        if let Some(b) = w.read().build(build_id)?
                            && b.state != crate::state::BuildState::Deleting
                        {
                            w.set_build_state(build_id, crate::state::BuildState::Deleting)?;
                        }
                        Ok(j)
                    })
                    .map_err(|e| e.to_string())?;
                let r = crate::builder::dib::remove_build_files(&dirs, image, build_id)
                    .map_err(|e| format!("cannot remove the files of build {build_id}: {e}"));
                let r = r.and_then(|()| {
                    self.write(|w| {
                        w.remove_build(build_id)?;
                        w.journal_done(j).map(|_| ())
                    })
                    .map_err(|e| e.to_string())
                });
                self.finish_if_err(j, &r);
                r.map(|()| "files and record removed".to_owned())
            }
            ActionKind::PruneBuild {
                image,
                build_id,
                formats,
            } => {
                let j = self
                    .write(|w| {
                        let j = self.journal(w, seq, "prune-build", a)?;
                        w.journal_start(j)?;
                        Ok(j)
                    })
                    .map_err(|e| e.to_string())?;
                // Files first, then the record: a crash in between leaves the record saying
                // the files exist, and the next plan prunes again (removing nothing).
                let mut freed = 0;
                let r = formats
                    .iter()
                    .try_for_each(|f| {
                        freed +=
                            crate::builder::dib::remove_format_files(&dirs, image, build_id, f)?;
                        Ok(())
                    })
                    .map_err(|e: std::io::Error| {
                        format!("cannot remove the files of build {build_id}: {e}")
                    })
                    .and_then(|()| {
                        self.write(|w| {
                            w.prune_build_formats(build_id, formats)?;
                            w.journal_done(j).map(|_| ())
                        })
                        .map_err(|e| e.to_string())
                    });
                self.finish_if_err(j, &r);
                r.map(|()| format!("removed {} ({})", formats.join(", "), human_size(freed)))
            }
            other => unreachable!("{other:?} is not a build action"),
        }
    }

    pub(super) fn finish_if_err(&self, journal: i64, r: &Result<(), String>) {
        if let Err(e) = r {
            self.finish(journal, &Err(e.clone()));
        }
    }

    /// Upload a build to this provider, or delete an upload.
    pub(super) async fn image_action(
        &self,
        client: &OpenStackClient,
        seq: i64,
        a: &Action,
    ) -> Step {
        let failed = |e: String| Step::Failed(a.address.clone(), e);
        match &a.kind {
            ActionKind::UploadImage {
                provider,
                image,
                build,
                format,
            } => {
                let dirs = match self.dirs() {
                    Ok(d) => d,
                    Err(e) => return failed(e),
                };
                let build_id = match build {
                    crate::reconcile::plan::BuildRef::Existing(id) => id.clone(),
                    crate::reconcile::plan::BuildRef::Planned => {
                        match self.built.lock().expect("built lock").get(image) {
                            Some(id) => id.clone(),
                            None => {
                                return failed(format!(
                                    "image_build.{image} did not complete, so there is nothing to upload"
                                ));
                            }
                        }
                    }
                };
                let Some(p) = self.config.provider(provider) else {
                    return failed(format!("provider {provider} is no longer configured"));
                };
                let Some(pd) = p.diskimages.iter().find(|d| &d.name == image) else {
                    return failed(format!("provider {provider} no longer lists {image}"));
                };
                let file = match crate::builder::dib::built_file(dirs, image, &build_id, format) {
                    Ok(f) => f,
                    Err(e) => return failed(e.to_string()),
                };
                let prepared = self.write(|w| {
                    let row = w.insert_upload(&crate::state::NewUpload {
                        build_id: Some(build_id.clone()),
                        image_name: image.clone(),
                        provider: provider.clone(),
                        format: Some(format.clone()),
                        external_name: String::new(),
                    })?;
                    let j = self.journal(w, seq, "upload-image", a)?;
                    w.journal_start(j)?;
                    Ok((row, j))
                });
                let (row, j) = match prepared {
                    Ok(x) => x,
                    Err(e) => return failed(e.to_string()),
                };
                let mut req = crate::builder::UploadRequest::new(p, pd, &build_id, &row.id, file);
                if let Some(progress) = &self.options.upload_progress {
                    let progress = Arc::clone(progress);
                    let address = a.address.clone();
                    req.progress = Some(Arc::new(move |u: crate::cloud::UploadProgress| {
                        progress(&address, u.sent, u.total)
                    }));
                }
                match crate::builder::upload(client, &req).await {
                    Ok(up) => {
                        let r = self.write(|w| {
                            w.update_upload(&row.id, |d| {
                                d.external_id = Some(up.external_id.clone());
                                d.external_name = up.external_name.clone();
                                d.attempts += 1;
                            })?;
                            w.set_upload_state(&row.id, crate::state::UploadState::Ready)?;
                            w.journal_done(j).map(|_| ())
                        });
                        if let Err(e) = r {
                            return failed(e.to_string());
                        }
                        self.uploaded
                            .lock()
                            .expect("uploaded lock")
                            .insert(a.address.clone(), (up.external_id.clone(), row.id.clone()));
                        Step::Done(
                            a.address.clone(),
                            format!(
                                "upload {} ready: {} ({})",
                                row.id, up.external_name, up.external_id
                            ),
                        )
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let leftover = e.leftover_image().map(str::to_owned);
                        let _ = self.write(|w| {
                            w.update_upload(&row.id, |d| {
                                d.last_error = Some(msg.clone());
                                d.external_id = leftover.clone();
                                d.attempts += 1;
                            })?;
                            w.set_upload_state(&row.id, crate::state::UploadState::Failed)?;
                            w.journal_fail(j, &msg).map(|_| ())
                        });
                        failed(format!("upload {} failed: {msg}", row.id))
                    }
                }
            }
            ActionKind::DeleteUpload {
                upload_id,
                external_id,
                ..
            } => {
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "delete-image", a)?;
                    w.journal_start(j)?;
                    if let Some(u) = w.read().upload(upload_id)?
                        && u.state != crate::state::UploadState::Deleting
                    {
                        w.set_upload_state(upload_id, crate::state::UploadState::Deleting)?;
                    }
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                if let Some(id) = external_id {
                    let r = match client.delete_image(id).await {
                        Err(e) if e.is_not_found() => Ok(()),
                        other => other,
                    };
                    if let Err(e) = r {
                        // The record stays `deleting`: the next plan tries again.
                        let msg = e.to_string();
                        self.finish(j, &Err(msg.clone()));
                        return failed(msg);
                    }
                }
                match self.write(|w| {
                    if w.read().upload(upload_id)?.is_some() {
                        w.remove_upload(upload_id)?;
                    }
                    w.journal_done(j).map(|_| ())
                }) {
                    Ok(()) => Step::Done(a.address.clone(), "image and record removed".into()),
                    Err(e) => failed(e.to_string()),
                }
            }
            other => unreachable!("{other:?} is not an image action"),
        }
    }
}
